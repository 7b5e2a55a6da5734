//! Scenario files: reading, checking and compiling them into a [`Scenario`]. Owns the file
//! format and its error messages, the names of the metrics a threshold may use (`metric`)
//! and the secrets a scenario names (`secrets`: read from the environment or a file, kept
//! out of every output). Knows nothing of how traffic is generated, sent or measured: it
//! depends on `chatload-protocol` (the id layout, how ids are read back) and on nothing of
//! the client side, which the compiler holds.

use chatload_protocol as protocol;

pub mod addresses;
pub mod compile;
mod compile_business;
mod compile_pattern;
pub mod distribution;
pub mod distribution_syntax;
pub mod error;
mod file;
pub mod gateway;
pub mod http_signals;
pub mod ids;
pub mod metric;
pub mod model;
pub mod sampler;
pub mod schema;
pub mod secrets;
mod special;
pub mod target;
pub mod template;
pub mod threshold;
mod timeline;
pub mod units;
pub mod webhook;
pub mod xmpp;

pub use compile::server_knobs;
pub use error::ScenarioError;
pub use model::*;

use std::path::Path;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}; check the path and that the file is readable")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a regular file (a folder, a device or a pipe); give the path of a scenario file"
    )]
    NotAFile { path: String },
    #[error(
        "{path} is larger than {MAX_SCENARIO_BYTES} bytes, far more than any scenario; check that it is the scenario file"
    )]
    TooLarge { path: String },
    #[error("{0}")]
    Invalid(#[from] ScenarioError),
}

/// The largest scenario file chatload reads: scenarios are a few kilobytes.
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Reads and checks a scenario file: only a regular file, and at most
/// [`MAX_SCENARIO_BYTES`], so that `/dev/zero` or a pipe cannot fill memory or hang the run.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let shown = || path.display().to_string();
    let io = |source| LoadError::Io {
        path: shown(),
        source,
    };
    // Non-blocking, so that opening a FIFO does not wait for a writer; the type is then
    // checked on the open file itself.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(LoadError::NotAFile { path: shown() });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SCENARIO_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(LoadError::TooLarge { path: shown() });
    }
    match String::from_utf8(bytes) {
        Ok(source) => Ok(parse(path, &source)?),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let source = String::from_utf8_lossy(e.as_bytes()).into_owned();
            Err(ScenarioError::at(
                path,
                &source,
                Some(at..at + 1),
                "this is not UTF-8 text: save the scenario as UTF-8",
            )
            .into())
        }
    }
}

/// Checks scenario text; `path` is used for messages only.
pub fn parse(path: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    let written: file::ScenarioFile = toml::from_str(source).map_err(|e| {
        let message = friendly(e.message());
        ScenarioError::at(path, source, e.span(), message)
    })?;
    let mut scenario = compile::compile(written, path)
        .map_err(|issue| ScenarioError::at(path, source, issue.span, issue.message))?;
    scenario.source_digest = digest(source);
    Ok(scenario)
}

/// SHA-256 of `text`, in hex.
fn digest(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// toml/serde messages in the words of the file format.
fn friendly(message: &str) -> String {
    message
        .trim_end()
        .replace('\n', " ")
        .replace("expected i64", "expected a whole number")
        .replace("expected u64", "expected a whole number 0 or more")
        .replace("expected f64", "expected a number")
        .replace("missing field", "missing key")
        .replace("unknown field", "unknown key")
}

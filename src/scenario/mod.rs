//! Scenario files: reading, checking and compiling them into a [`Scenario`]. Owns the file
//! format and its error messages; it knows nothing of how traffic is generated or sent.

pub mod compile;
mod compile_business;
mod compile_pattern;
pub mod distribution;
pub mod distribution_syntax;
pub mod error;
mod file;
pub mod model;
pub mod sampler;
pub mod schema;
mod special;
pub mod target;
pub mod threshold;
pub mod units;

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
    #[error("{0}")]
    Invalid(#[from] ScenarioError),
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse(path, &source)?)
}

/// Checks scenario text; `path` is used for messages only.
pub fn parse(path: &Path, source: &str) -> Result<Scenario, ScenarioError> {
    let written: file::ScenarioFile = toml::from_str(source).map_err(|e| {
        let message = friendly(e.message());
        ScenarioError::at(path, source, e.span(), message)
    })?;
    compile::compile(written, path)
        .map_err(|issue| ScenarioError::at(path, source, issue.span, issue.message))
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

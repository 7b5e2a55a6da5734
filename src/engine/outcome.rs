//! What a run leaves behind and how it gets to disk: the bundle's staging folder opened when
//! users start (the interval log streams into it as the run goes), and at the end the
//! summary and the log written into it and the folder moved into place whole. Owns the
//! run's side of the bundle; the files' contents are `report::bundle`'s.

use super::options::{RunError, RunOptions};
use crate::report::bundle;
use crate::report::summary::Summary;
use std::path::PathBuf;

/// A run whose bundle is in place: its summary and where the bundle is.
pub struct RunResult {
    pub summary: Summary,
    pub bundle_dir: PathBuf,
}

/// What a run leaves to write: its summary, its interval log and the staging folder. The
/// caller writes it (`write_bundle`), after anything it wants to do with the summary first.
pub struct Finished {
    pub summary: Summary,
    pub log: Option<Vec<u8>>,
    pub staged: Result<bundle::Staged, (PathBuf, std::io::Error)>,
}

impl Finished {
    /// The bundle moved into place whole, or the error that stopped it with the summary
    /// kept for the console.
    pub fn write_bundle(self) -> Result<RunResult, RunError> {
        let Finished {
            summary,
            log,
            staged,
        } = self;
        let written = staged
            .map_err(|(at, source)| bundle::BundleError {
                path: at.display().to_string(),
                source,
            })
            .and_then(|staged| bundle::write_staged(staged, &summary, log.as_deref()));
        match written {
            Ok(bundle_dir) => Ok(RunResult {
                summary,
                bundle_dir,
            }),
            Err(error) => Err(RunError::Bundle {
                error,
                summary: Box::new(summary),
            }),
        }
    }
}

/// The bundle's staging folder, and the interval log streamed into it as the run goes (kept
/// in memory if the folder cannot be made; writing the bundle at the end then reports the
/// problem). The bundle goes to `--out`, or to a `reports/<scenario>-<UTC time>/` of this
/// run's own, when it is whole.
pub fn open_hlog(
    opts: &RunOptions,
    scenario: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) -> (
    crate::metrics::hlog::HlogWriter,
    Result<bundle::Staged, (PathBuf, std::io::Error)>,
) {
    let now = std::time::SystemTime::now();
    let base = bundle::default_dir(&opts.reports_root, scenario, started_at);
    let staged = bundle::Staged::new(opts.out.as_deref(), &base)
        .map_err(|e| (opts.out.clone().unwrap_or(base), e));
    let Ok(s) = &staged else {
        return (crate::metrics::hlog::HlogWriter::new(now), staged);
    };
    // From here until the bundle is complete, an exit at once takes the staging folder away.
    bundle::begin(s.dir());
    let hlog =
        crate::metrics::hlog::HlogWriter::streaming(&s.dir().join("latency.hlog"), now, scenario)
            .unwrap_or_else(|_| crate::metrics::hlog::HlogWriter::new(now));
    (hlog, staged)
}

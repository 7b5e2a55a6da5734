//! What a caller gives a run and what a run can fail with: the command line's overrides
//! (`RunOptions`) and the one error type of setting up, carrying out and writing a run
//! (`RunError`). Owns these shapes, not what the run does with them.

use crate::report::bundle;
use crate::report::summary::Summary;
use crate::scenario::units::Micros;
use crate::server;
use std::path::PathBuf;

/// What the command line may change about a scenario run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub target: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub duration: Option<Micros>,
    pub seed: Option<u64>,
    /// Write the bundle straight into this folder.
    pub out: Option<PathBuf>,
    /// Where default bundle folders go (`reports/`).
    pub reports_root: PathBuf,
    pub quiet: bool,
    /// End the run early when a threshold is clearly broken.
    pub abort_on_fail: bool,
    /// This process's share of a run split across machines.
    pub segment: crate::workload::Segment,
    /// Start sending at this time (every segment of a split run together).
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the business webhook receiver listens (default: loopback, a free port).
    pub webhook_listen: Option<String>,
    /// Threads the users run on (`engine::shards`); 0 or 1: all on the calling runtime.
    pub shards: usize,
}

impl RunOptions {
    /// The URL a run of `scenario` goes to: `--target`, else the scenario's own; `None`
    /// means the embedded server.
    pub fn target_url<'a>(&'a self, scenario: &'a crate::scenario::Scenario) -> Option<&'a str> {
        self.target.as_deref().or(scenario.target.url.as_deref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the target {url} is not reachable ({detail}); start your server or check --target")]
    Unreachable { url: String, detail: String },
    /// Something answered at the target, but the first session could not be set up.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Server(#[from] server::BindError),
    #[error("cannot set up the run: {0}")]
    Setup(String),
    /// The run finished but its bundle could not be written: the summary is still here, so
    /// the console can show it.
    #[error("{error}")]
    Bundle {
        error: bundle::BundleError,
        summary: Box<Summary>,
    },
}

//! Running a scenario: goose-driven virtual users, the open-model pacer, signals and the
//! run's sequencing. Owns behaviour over time; measurement and reports are elsewhere.

mod abort;
mod admin;
mod business;
mod collector;
mod context;
mod delivery_webhook;
mod dispatcher;
pub mod embedded;
mod goaway_storms;
mod goose_bridge;
mod id_start;
mod inbox;
mod json_listener;
mod limits;
mod options;
mod outcome;
mod precise_timer;
mod preflight;
mod progress;
mod quiet;
mod reachability;
mod reconnect;
mod run;
mod settle;
mod shards;
pub mod signals;
mod vu;
pub mod workers;

pub use options::{RunError, RunOptions};
pub use outcome::{Finished, RunResult};
pub use preflight::segment_refusal;
pub use run::{execute, run};

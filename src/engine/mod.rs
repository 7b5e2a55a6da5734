//! Running a scenario: goose-driven virtual users, the open-model pacer, signals and the
//! run's sequencing. Owns behaviour over time; measurement and reports are elsewhere.

mod abort;
mod business;
mod context;
mod dispatcher;
mod goose_bridge;
mod limits;
mod progress;
mod quiet;
mod reconnect;
mod run;
pub mod signals;
mod vu;

pub use run::{RunError, RunOptions, RunResult, run};

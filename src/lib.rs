//! chatload: load testing and traffic simulation for messaging systems.
//!
//! Data flows one way: `scenario` (parse, check) → `workload` (population, profile,
//! schedule) → `engine` (goose-driven virtual users) → `transport` → the target;
//! observations → `metrics` → `report`. `server` is the embedded reference target and shares
//! only `protocol` with the client side. The protocol, the scenario format (with `secrets`
//! and `metric`) and the server are crates of their own (`crates/chatload-protocol`,
//! `crates/chatload-scenario`, `crates/chatload-server`), re-exported here under their old
//! names, so the compiler refuses a server or a scenario module that reaches into the
//! client side.

pub mod capacity;
pub mod engine;
pub mod human;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod setup;
pub mod transport;
pub mod workload;

pub use chatload_protocol as protocol;
pub use chatload_protocol::wsio;
pub use chatload_scenario as scenario;
pub use chatload_scenario::{metric, secrets};
pub use chatload_server as server;

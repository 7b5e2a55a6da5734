//! chatload: load testing and traffic simulation for messaging systems.
//!
//! Data flows one way: `scenario` (parse, check) → `workload` (population, profile,
//! schedule) → `engine` (goose-driven virtual users) → `transport` → the target;
//! observations → `metrics` → `report`. `server` is the embedded reference target and shares
//! only `protocol` with the client side.

pub mod capacity;
pub mod engine;
pub mod metrics;
pub mod plan;
pub mod protocol;
pub mod report;
pub mod scenario;
pub mod secrets;
pub mod server;
pub mod transport;
pub mod workload;
pub mod wsio;

//! From a checked scenario to traffic: the population, the load profile and the schedule
//! of messages. Pure and deterministic (no clocks, no sockets), so it can be tested and
//! planned without a target.

pub mod churn;
pub mod population;
pub mod profile;
pub mod schedule;
pub mod segment;

pub use population::Population;
pub use profile::Profile;
pub use schedule::{Order, Schedule};
pub use segment::Segment;

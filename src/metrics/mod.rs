//! Measurement: metric names, per-thread HdrHistogram recorders, the message ledger and
//! the interval series. Owns numbers as measured; the report decides how to show them.

pub mod hlog;
pub mod kernel_tcp;
pub mod kinds;
pub mod ledger;
pub mod own_usage;
pub mod recorder;
pub mod series;

/// Three decimals: enough for rates, seconds and cores, and stable through a JSON round trip.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub use kinds::{Counters, ErrorKind, LATE_SEND_US, Metric, NotSentReason};
pub use ledger::{Ledger, Owed, Received, Settlement, Verification};
pub use recorder::{MetricSet, Recorders, new_histogram};
pub use series::{IntervalPoint, Series};

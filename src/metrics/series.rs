//! The interval series: one point per interval (1 s) with throughput, latency percentiles
//! and trouble counts, built from the per-interval histograms the collector drains.

use super::kinds::Metric;
use super::recorder::MetricSet;
use serde::{Deserialize, Serialize};

/// Latency summary of one metric over one interval.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct IntervalLatency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl IntervalLatency {
    /// The interval's count and percentiles (zeros when it has no samples).
    pub fn of(h: Option<&hdrhistogram::Histogram<u64>>) -> Self {
        h.filter(|h| !h.is_empty())
            .map_or(IntervalLatency::default(), |h| IntervalLatency {
                count: h.len(),
                p50_us: h.value_at_quantile(0.5),
                p90_us: h.value_at_quantile(0.9),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IntervalPoint {
    /// End of the interval, seconds since the run started.
    pub t_s: f64,
    pub connected: u64,
    /// Connections completed in the interval.
    #[serde(default)]
    pub connects: u64,
    /// Messages the schedule handed out in the interval (the offered load).
    #[serde(default)]
    pub messages_scheduled: u64,
    pub messages_sent: u64,
    pub delivered: u64,
    pub errors: u64,
    pub late_sends: u64,
    pub duplicates: u64,
    /// Deliveries of this interval's sends that were lost (known only at the end).
    #[serde(default)]
    pub lost: u64,
    pub send: IntervalLatency,
    pub delivery: IntervalLatency,
    /// chatload's own CPU in the interval, in cores to 3 decimals (busy seconds per second; with the
    /// embedded server, the server's too). Absent where the system does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub interval_s: f64,
    pub points: Vec<IntervalPoint>,
}

impl Series {
    /// One interval ending at `t_s`; `cpu_s` is the CPU seconds chatload's process spent in
    /// it, when known.
    pub fn push(&mut self, t_s: f64, connected: u64, interval: &MetricSet, cpu_s: Option<f64>) {
        let length_s = t_s - self.points.last().map_or(0.0, |p| p.t_s);
        let c = interval.counters_total();
        let lat = |m: Metric| IntervalLatency::of(interval.merged(m).as_ref());
        self.points.push(IntervalPoint {
            t_s,
            connected,
            connects: interval.merged(Metric::Connect).map_or(0, |h| h.len()),
            messages_scheduled: c.messages_scheduled,
            messages_sent: c.messages_sent,
            delivered: c.delivered,
            errors: interval.errors_total(),
            late_sends: c.late_sends,
            duplicates: c.duplicates,
            lost: 0,
            send: lat(Metric::Send),
            delivery: lat(Metric::Delivery),
            cpu_cores: cpu_s
                .filter(|_| length_s > 0.0)
                .map(|c| super::round3(c / length_s)),
        });
    }
}

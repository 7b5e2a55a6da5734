//! The machine-readable result of a run (`summary.json`): its model and how it is built from
//! the measured totals. Owns the schema; rendering for people is in `console` and `markdown`.

pub use super::accounting::{Accounting, NotSentReasons};
use crate::metrics::{Counters, ErrorKind, Metric, MetricSet, Series, Settlement};
use crate::scenario::Scenario;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: u32 = 7;

pub use crate::metrics::round3;

/// One metric's distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl LatencyStats {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: h.len(),
            min_us: h.min(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PatternSummary {
    pub name: String,
    pub kind: String,
    pub metrics: BTreeMap<String, LatencyStats>,
    pub accounting: Accounting,
    pub messages_per_s: f64,
    /// Every event counter of the pattern (signals, statuses, API refusals, retries, …).
    #[serde(default)]
    pub counters: Counters,
    /// For business patterns: how the API and its webhooks behaved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business: Option<BusinessSummary>,
    /// This pattern's sends that failed, by kind (connection-level errors are the run's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
}

/// Non-zero error counts of one slot by kind name.
fn error_map(counts: &[u64; ErrorKind::ALL.len()]) -> BTreeMap<String, u64> {
    ErrorKind::ALL
        .iter()
        .map(|k| (k.name().to_string(), counts[*k as usize]))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The business API's side of one pattern, joined from requests and webhooks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusinessSummary {
    /// Requests made (first attempts), accepted, and retried.
    pub requests: u64,
    pub accepted: u64,
    pub retries: u64,
    /// Refusals by code, and requests that timed out (maybe accepted: no idempotency key).
    pub throttled_130429: u64,
    pub pair_limited_131056: u64,
    pub outside_window_131047: u64,
    pub spam_131048: u64,
    pub server_errors_5xx: u64,
    pub timeouts: u64,
    /// Status webhooks joined to their send, by status.
    pub status_sent: u64,
    pub status_delivered: u64,
    pub status_read: u64,
    pub status_failed: u64,
    /// Accepted sends with neither a `sent` nor a `failed` status by the end.
    pub missing_statuses: u64,
    /// Late replies sent after the window: the API must refuse every one with 131047; those
    /// it accepted are violations.
    pub late_replies: u64,
    pub window_violations: u64,
    /// Consumers' replies (inbound webhooks joined to the consumer's send are `delivered`).
    pub replies: u64,
    /// Messages consumers received twice (a retry after a timeout duplicates: no idempotency key).
    pub duplicates: u64,
}

impl BusinessSummary {
    pub fn build(c: &Counters) -> Self {
        BusinessSummary {
            requests: c.api_requests,
            accepted: c.api_accepted,
            retries: c.api_retries,
            throttled_130429: c.throttled_130429,
            pair_limited_131056: c.pair_limited_131056,
            outside_window_131047: c.outside_window_131047,
            spam_131048: c.spam_131048,
            server_errors_5xx: c.server_errors_5xx,
            timeouts: c.request_timeouts,
            status_sent: c.status_sent,
            status_delivered: c.status_delivered,
            status_read: c.status_read,
            status_failed: c.status_failed,
            missing_statuses: c
                .api_accepted
                .saturating_sub(c.status_sent + c.status_failed),
            late_replies: c.late_replies,
            window_violations: c.window_violations,
            replies: c.replies,
            duplicates: c.duplicates,
        }
    }
}

/// How a reconnect storm went: how many it dropped and how fast they came back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StormSummary {
    pub name: String,
    pub at_s: f64,
    pub dropped: u64,
    pub reconnected: u64,
    pub gave_up: u64,
    /// Time from the storm until 95% / 99% / all of the dropped users were back.
    pub time_to_95_us: Option<u64>,
    pub time_to_99_us: Option<u64>,
    pub time_to_all_us: Option<u64>,
    /// Most connections completed in one second after the storm.
    pub peak_connects_per_s: u64,
    /// Duplicate deliveries seen from the storm until everyone was back (a resume that
    /// replays what was already delivered shows here).
    #[serde(default)]
    pub duplicates_during_recovery: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    pub rule: String,
    pub passed: bool,
    pub observed: Option<f64>,
    pub limit: f64,
    pub unit: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetSummary {
    /// With any `user:password@` hidden.
    pub url: String,
    pub embedded: bool,
    /// "chatload", "mqtt", "ws-gateway" or "http".
    #[serde(default = "chatload_protocol")]
    pub protocol: String,
    /// Delivery-webhook batches the target pushed again under a transaction id already
    /// taken (taken once; `[target.http.webhook] transaction`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub webhook_redelivered: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn verify() -> String {
    "verify".into()
}

fn chatload_protocol() -> String {
    "chatload".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub schema_version: u32,
    pub scenario: String,
    pub scenario_file: String,
    /// SHA-256 of the scenario file's text: merge and compare refuse runs of different ones.
    #[serde(default)]
    pub scenario_sha256: String,
    pub seed: u64,
    pub started_at: String,
    pub duration_s: f64,
    /// The duration the scenario (after `--duration`) planned, seconds.
    #[serde(default)]
    pub planned_duration_s: f64,
    /// People in the whole population (after `--users`), of which a segment runs a share.
    #[serde(default)]
    pub population: u64,
    /// Why the run ended: "completed", "interrupted" (by a signal) or "aborted: …".
    pub ended: String,
    /// The signal that ended the run ("SIGINT", "SIGTERM", "SIGHUP"), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// What a `loss` rule makes of unverified deliveries: "verify" (they fail it) or
    /// "unverified_ok" (the scenario accepts them).
    #[serde(default = "verify")]
    pub offline_delivery: String,
    pub target: TargetSummary,
    pub users: u32,
    pub peak_connected: u64,
    pub metrics: BTreeMap<String, LatencyStats>,
    pub accounting: Accounting,
    pub errors: BTreeMap<String, u64>,
    pub errors_total: u64,
    /// The first description seen of each error kind.
    #[serde(default)]
    pub error_examples: BTreeMap<String, String>,
    pub patterns: Vec<PatternSummary>,
    #[serde(default)]
    pub storms: Vec<StormSummary>,
    pub thresholds: Vec<Verdict>,
    pub passed: bool,
    pub messages_per_s: f64,
    pub deliveries_per_s: f64,
    pub max_send_lag_us: u64,
    pub series: Series,
    /// What the embedded server counted (absent for an external target).
    pub server: Option<crate::protocol::ServerCounters>,
    /// Where the run ran.
    #[serde(default)]
    pub machine: Option<Machine>,
    /// When time zero was, in milliseconds since the Unix epoch (aligns merged segments).
    #[serde(default)]
    pub epoch_unix_ms: f64,
    /// For one segment of a run split across machines: which, and how far from the agreed
    /// start it began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<SegmentRun>,
    /// For a merged bundle: the segments it joins and how their clocks lined up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedSegment>,
    /// Seconds into the run from which the scenario's messages are in no count: chatload was
    /// so far behind at the profile's end that counting the rest of its schedule as not sent
    /// ran out of time. Absent when every scheduled message is counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_uncounted_from_s: Option<f64>,
    /// What this machine's kernel counted of TCP from the first user's connect to the end
    /// (SYNs sent again, accept-queue overflows); absent where the system does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<crate::metrics::kernel_tcp::KernelTcp>,
    /// What chatload's own process used from the first user's connect to the end (CPU),
    /// and its peak resident memory; with the embedded server, the server's too. Absent
    /// where the system does not say, and in bundles from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own: Option<crate::metrics::own_usage::OwnUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MergedSegment {
    pub bundle: String,
    pub index: u32,
    /// This segment's time zero after the earliest segment's, in milliseconds.
    pub epoch_offset_ms: f64,
    /// Its time zero after the agreed start (`--start-at`), by its own clock.
    pub start_offset_ms: Option<f64>,
    pub messages_sent: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SegmentRun {
    pub index: u32,
    pub count: u32,
    /// The agreed start (`--start-at`), if one was given.
    pub start_at: Option<String>,
    /// Time zero minus the agreed start, in milliseconds (this machine's clock).
    pub start_offset_ms: Option<f64>,
}

/// The machine and chatload version a run ran on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Machine {
    pub host: String,
    pub os: String,
    pub arch: String,
    pub cpus: usize,
    pub version: String,
    /// Threads the run used (`--threads`, or chosen from the scenario's planned traffic):
    /// the shards its users ran on, or a closed loop's runtime workers; absent in bundles
    /// from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
}

impl Machine {
    pub fn this() -> Machine {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            host,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            version: format!("chatload {}", env!("CARGO_PKG_VERSION")),
            workers: tokio::runtime::Handle::try_current()
                .ok()
                .map(|h| h.metrics().num_workers()),
        }
    }
}

/// Everything measured in one run, ready to summarise.
pub struct Measured<'a> {
    pub scenario: &'a Scenario,
    pub totals: &'a MetricSet,
    pub settlement: &'a Settlement,
    pub series: Series,
    pub started_at: String,
    pub duration_s: f64,
    pub interrupted: bool,
    /// The signal that interrupted the run, if one did.
    pub signal: Option<&'static str>,
    pub target: TargetSummary,
    pub users: u32,
    pub peak_connected: u64,
    pub server: Option<crate::protocol::ServerCounters>,
    /// See [`Summary::schedule_uncounted_from_s`].
    pub schedule_uncounted_from_s: Option<f64>,
    /// See [`Summary::tcp`].
    pub tcp: Option<crate::metrics::kernel_tcp::KernelTcp>,
    /// See [`Summary::own`].
    pub own: Option<crate::metrics::own_usage::OwnUsage>,
}

fn metric_map(get: impl Fn(Metric) -> Option<Histogram<u64>>) -> BTreeMap<String, LatencyStats> {
    Metric::ALL
        .into_iter()
        .filter_map(|m| {
            get(m)
                .filter(|h| !h.is_empty())
                .map(|h| (m.name().to_string(), LatencyStats::from_histogram(&h)))
        })
        .collect()
}

impl Summary {
    /// How many errors of `kind` the run counted.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.get(kind.name()).copied().unwrap_or(0)
    }

    pub fn build(m: Measured<'_>) -> Summary {
        let patterns_n = m.scenario.patterns.len();
        let secs = m.duration_s.max(1e-9);
        let s = m.settlement;
        let patterns: Vec<PatternSummary> = m
            .scenario
            .patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let acc = Accounting::build(
                    &m.totals.counters[i],
                    s.lost[i],
                    s.in_flight[i],
                    s.unverified[i],
                );
                let counters = m.totals.counters[i];
                PatternSummary {
                    name: p.name.clone(),
                    kind: p.kind.kind_name().to_string(),
                    metrics: metric_map(|metric| m.totals.histogram(i, metric).cloned()),
                    messages_per_s: round3(acc.messages_sent as f64 / secs),
                    accounting: acc,
                    counters,
                    business: p
                        .kind
                        .is_business()
                        .then(|| BusinessSummary::build(&counters)),
                    errors: error_map(&m.totals.errors[i]),
                }
            })
            .collect();
        let total_counters = m.totals.counters_total();
        let sum = |v: &Vec<u64>| v.iter().take(patterns_n + 1).sum::<u64>();
        let accounting = Accounting::build(
            &total_counters,
            sum(&s.lost),
            sum(&s.in_flight),
            sum(&s.unverified),
        );
        let errors: BTreeMap<String, u64> = ErrorKind::ALL
            .iter()
            .map(|k| (k.name().to_string(), m.totals.errors_of(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let error_examples: BTreeMap<String, String> = ErrorKind::ALL
            .iter()
            .filter_map(|k| {
                m.totals.error_examples[*k as usize]
                    .clone()
                    .map(|e| (k.name().to_string(), e))
            })
            .collect();
        let storms = storm_summaries(&m);
        let metrics = metric_map(|metric| m.totals.merged(metric));
        let max_send_lag_us = metrics.get("send_lag").map_or(0, |l| l.max_us);
        Summary {
            schema_version: SCHEMA_VERSION,
            scenario: m.scenario.name.clone(),
            scenario_file: m.scenario.source_path.clone(),
            scenario_sha256: m.scenario.source_digest.clone(),
            seed: m.scenario.seed,
            planned_duration_s: round3(m.scenario.duration.0 as f64 / 1e6),
            population: m.scenario.consumers.users,
            started_at: m.started_at,
            duration_s: round3(m.duration_s),
            ended: if m.interrupted {
                "interrupted"
            } else {
                "completed"
            }
            .to_string(),
            signal: m.signal.map(str::to_string),
            offline_delivery: m.scenario.offline_delivery.name().to_string(),
            target: m.target,
            users: m.users,
            peak_connected: m.peak_connected,
            errors_total: errors.values().sum(),
            errors,
            error_examples,
            messages_per_s: round3(accounting.messages_sent as f64 / secs),
            deliveries_per_s: round3(accounting.delivered as f64 / secs),
            accounting,
            metrics,
            patterns,
            storms,
            thresholds: Vec::new(),
            passed: true,
            max_send_lag_us,
            series: m.series,
            server: m.server,
            machine: Some(Machine::this()),
            epoch_unix_ms: 0.0,
            segment: None,
            merged_from: Vec::new(),
            schedule_uncounted_from_s: m.schedule_uncounted_from_s.map(round3),
            tcp: m.tcp,
            own: m.own,
        }
    }
}

fn storm_summaries(m: &Measured<'_>) -> Vec<StormSummary> {
    m.scenario
        .patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let crate::scenario::PatternKind::ReconnectStorm { at, .. } = p.kind else {
                return None;
            };
            let c = &m.totals.counters[i];
            let h = m
                .totals
                .histogram(i, Metric::Reconnect)
                .filter(|h| !h.is_empty());
            // The time by which a share q of the dropped users was back, if that many came back.
            let by = |q: f64| -> Option<u64> {
                let h = h?;
                let needed = (q * c.dropped_connections as f64).ceil() as u64;
                (needed <= h.len() && needed > 0)
                    .then(|| h.value_at_quantile(needed as f64 / h.len() as f64))
            };
            let at_s = at.as_secs_f64();
            Some(StormSummary {
                name: p.name.clone(),
                at_s,
                dropped: c.dropped_connections,
                reconnected: c.reconnects,
                gave_up: c.gave_up,
                time_to_95_us: by(0.95),
                time_to_99_us: by(0.99),
                time_to_all_us: by(1.0),
                duplicates_during_recovery: {
                    let until = at_s + by(1.0).unwrap_or(u64::MAX / 2) as f64 / 1e6 + 1.0;
                    m.series
                        .points
                        .iter()
                        .filter(|pt| pt.t_s > at_s && pt.t_s <= until.ceil())
                        .map(|pt| pt.duplicates)
                        .sum()
                },
                peak_connects_per_s: m
                    .series
                    .points
                    .iter()
                    .filter(|pt| pt.t_s > at_s)
                    .map(|pt| pt.connects)
                    .max()
                    .unwrap_or(0),
            })
        })
        .collect()
}

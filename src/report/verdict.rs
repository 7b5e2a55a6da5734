//! Judging threshold rules against a summary: what was observed, what was allowed, and one
//! sentence saying so. Owns the meaning of each rule's subject in the summary's numbers.

use super::summary::{LatencyStats, Summary, Verdict};
use crate::human::format_us;
use crate::scenario::threshold::{Stat, Subject, Threshold};

/// Answers (pattern, metric, percentile) from the run's histograms.
pub type PercentileLookup<'a> = dyn Fn(Option<&str>, &str, f64) -> Option<u64> + 'a;

fn latency_value(
    stats: &LatencyStats,
    stat: Stat,
    hist_percentile: impl Fn(f64) -> Option<u64>,
) -> Option<f64> {
    if stats.count == 0 {
        return None;
    }
    Some(match stat {
        Stat::Min => stats.min_us as f64,
        Stat::Mean => stats.mean_us,
        Stat::Max => stats.max_us as f64,
        Stat::Percentile(p) => match p {
            x if (x - 50.0).abs() < 1e-9 => stats.p50_us as f64,
            x if (x - 90.0).abs() < 1e-9 => stats.p90_us as f64,
            x if (x - 99.0).abs() < 1e-9 => stats.p99_us as f64,
            x if (x - 99.9).abs() < 1e-9 => stats.p999_us as f64,
            other => hist_percentile(other)? as f64,
        },
    })
}

/// Looks up a rule's observed value. `percentile` answers percentiles the summary does not
/// store (from the run's histograms), given (pattern, metric, percentile).
pub fn observe(s: &Summary, subject: &Subject, percentile: &PercentileLookup) -> Option<f64> {
    let a = &s.accounting;
    match subject {
        Subject::Latency {
            pattern,
            metric,
            stat,
        } => {
            let stats = match pattern {
                Some(p) => s
                    .patterns
                    .iter()
                    .find(|x| &x.name == p)?
                    .metrics
                    .get(metric)
                    .copied(),
                None => s.metrics.get(metric).copied(),
            }
            .unwrap_or_default();
            latency_value(&stats, *stat, |q| percentile(pattern.as_deref(), metric, q))
        }
        Subject::Count { name } => Some(match name.as_str() {
            "sent" => a.sent,
            "acked" => a.acked,
            "delivered" => a.delivered,
            "loss" | "lost" => a.lost,
            "in_flight" => a.in_flight,
            "duplicates" => a.duplicated,
            "reordered" => a.reordered,
            "late_sends" => a.late_sends,
            "errors" => s.errors_total,
            "not_sent" => a.not_sent,
            "messages_scheduled" => a.messages_scheduled,
            "delivered_late" => a.delivered_late,
            "unverified" => a.unverified,
            "refused" => a.refused,
            _ => return None,
        } as f64),
        Subject::Rate { name } => {
            let pct = |n: u64, d: u64| {
                if d == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / d as f64
                }
            };
            Some(match name.as_str() {
                "loss_rate" => pct(a.lost, a.sent),
                // Errors per operation: messages sent plus connection attempts.
                "error_rate" => {
                    let connects = s.metrics.get("connect").map_or(0, |c| c.count);
                    pct(s.errors_total, a.messages_sent + connects + s.errors_total)
                }
                "duplicate_rate" => pct(a.duplicated, a.delivered),
                "late_send_rate" => pct(a.late_sends, a.messages_sent),
                _ => return None,
            })
        }
    }
}

fn show(value: f64, subject: &Subject) -> String {
    match subject {
        Subject::Latency { .. } => format_us(value),
        Subject::Count { .. } => format!("{}", value as u64),
        Subject::Rate { .. } => format!("{value:.3}%"),
    }
}

/// Whether a rule judges loss (the count of lost deliveries or the loss rate): the rules
/// that deliveries of unknown fate (unverified, in flight) can turn.
fn judges_loss(subject: &Subject) -> bool {
    match subject {
        Subject::Count { name } => matches!(name.as_str(), "loss" | "lost"),
        Subject::Rate { name } => name == "loss_rate",
        Subject::Latency { .. } => false,
    }
}

/// Why a loss rule cannot pass on what was measured: deliveries nobody could verify,
/// unless the scenario accepted them.
fn unverified_loss(s: &Summary, subject: &Subject) -> Option<String> {
    let unverified = s.accounting.unverified;
    (judges_loss(subject) && unverified > 0 && s.offline_delivery != "unverified_ok").then(|| {
        format!(
            "but {unverified} deliveries to offline recipients are unverified (the target's protocol cannot resume a session to show what it kept for them); set offline_delivery = \"unverified_ok\" in [scenario] to accept that"
        )
    })
}

/// Why a loss rule that holds on the deliveries counted lost does not hold on what is
/// known: deliveries still in flight when the run ended (inside their loss deadline,
/// neither delivered nor lost) may be lost, so the rule passes only if it would still hold
/// with every one of them lost.
fn in_flight_loss(s: &Summary, rule: &Threshold) -> Option<String> {
    let a = &s.accounting;
    let in_flight = a.in_flight;
    if in_flight == 0 || a.sent == 0 || !judges_loss(&rule.subject) {
        return None;
    }
    let worst_lost = (a.lost + in_flight) as f64;
    let worst = match rule.subject {
        Subject::Rate { .. } => worst_lost * 100.0 / a.sent as f64,
        _ => worst_lost,
    };
    if rule.op.holds(worst, rule.limit) {
        return None;
    }
    let why = if s.ended == "completed" {
        "the drain ended before their loss deadline: give the scenario a `drain` at least as long as its `loss_deadline`"
    } else {
        "the run ended early"
    };
    Some(format!(
        "but {in_flight} deliveries were still in flight when the run ended, and with them lost it would be {} ({why})",
        show(worst, &rule.subject)
    ))
}

pub fn judge(s: &Summary, rules: &[Threshold], percentile: &PercentileLookup) -> Vec<Verdict> {
    rules
        .iter()
        .map(|rule| {
            let observed = observe(s, &rule.subject, percentile);
            let unit = match rule.subject {
                Subject::Latency { .. } => "us",
                Subject::Count { .. } => "count",
                Subject::Rate { .. } => "percent",
            };
            let (passed, message) = match observed {
                Some(v) if rule.op.holds(v, rule.limit) => (
                    true,
                    format!(
                        "{}: observed {}, allowed {} {}",
                        rule.text,
                        show(v, &rule.subject),
                        rule.op,
                        show(rule.limit, &rule.subject)
                    ),
                ),
                Some(v) => (
                    false,
                    format!(
                        "{} failed: observed {}, allowed {} {}",
                        rule.text,
                        show(v, &rule.subject),
                        rule.op,
                        show(rule.limit, &rule.subject)
                    ),
                ),
                None => (
                    false,
                    format!(
                        "{} failed: nothing was measured for it in this run",
                        rule.text
                    ),
                ),
            };
            let doubt = unverified_loss(s, &rule.subject).or_else(|| in_flight_loss(s, rule));
            let (passed, message) = match doubt {
                Some(why) if passed => (false, format!("{message}, {why}")),
                _ => (passed, message),
            };
            Verdict {
                rule: rule.text.clone(),
                passed,
                observed,
                limit: rule.limit,
                unit: unit.to_string(),
                message,
            }
        })
        .collect()
}

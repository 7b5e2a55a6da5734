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
            "unacknowledged" => a.unacknowledged,
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
                "unacknowledged_rate" => pct(a.unacknowledged, a.messages_sent),
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

/// Metrics timed from a send to the target's confirmation of it: a send never confirmed
/// has no sample in them.
const CONFIRMED_SEND_METRICS: [&str; 2] = ["send", "send_service"];

/// Metrics timed from a send to its recipient having it: a lost delivery has no sample in
/// them (one that came past its loss deadline is timed apart, in `delivery_late`).
const DELIVERY_METRICS: [&str; 2] = ["delivery", "delivery_service"];

/// What a latency rule's samples leave out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Sends neither confirmed nor refused by the run's end.
    UnacknowledgedSends,
    /// Deliveries lost: not there within the loss deadline, or never.
    LostDeliveries,
}

impl Missing {
    /// The ones measured, for "observed … over {the acknowledged sends} only".
    fn measured(self) -> &'static str {
        match self {
            Missing::UnacknowledgedSends => "the acknowledged sends",
            Missing::LostDeliveries => "the deliveries that came in time",
        }
    }

    fn sentence(self, count: u64, of: u64, with_them: &str) -> String {
        let (count, of) = (crate::human::thousands(count), crate::human::thousands(of));
        match self {
            Missing::UnacknowledgedSends => format!(
                "{count} of {of} sends were never acknowledged (neither confirmed nor refused by the run's end); counted as slower than every acknowledged send, {with_them}"
            ),
            Missing::LostDeliveries => format!(
                "{count} of {of} deliveries were lost (not there within the loss deadline); counted as slower than every delivery that came in time, {with_them}"
            ),
        }
    }

    fn past_every(self) -> &'static str {
        match self {
            Missing::UnacknowledgedSends => "it lies past every acknowledged send",
            Missing::LostDeliveries => "it lies past every delivery that came in time",
        }
    }
}

/// How a latency rule reads when some of what it times has no sample: sends never
/// acknowledged, deliveries lost. Leaving them out would let a target that stopped answering
/// (or dropped messages) pass on what it did answer. They are counted as slower than every
/// measured one — the drain waited for an unacknowledged send, and a lost delivery is past
/// its loss deadline, which every delivery in time is within — so a percentile is read
/// further up the measured ones, and past them, as the mean and the maximum, it has no
/// finite value.
struct Unmeasured {
    missing: Missing,
    count: u64,
    of: u64,
    /// The rule's value with them counted; `None`: past every measured one.
    worst: Option<f64>,
}

fn unmeasured(s: &Summary, subject: &Subject, percentile: &PercentileLookup) -> Option<Unmeasured> {
    let Subject::Latency {
        pattern,
        metric,
        stat,
    } = subject
    else {
        return None;
    };
    let missing = if CONFIRMED_SEND_METRICS.contains(&metric.as_str()) {
        Missing::UnacknowledgedSends
    } else if DELIVERY_METRICS.contains(&metric.as_str()) {
        Missing::LostDeliveries
    } else {
        return None;
    };
    let (accounting, stats) = match pattern {
        Some(p) => {
            let p = s.patterns.iter().find(|x| &x.name == p)?;
            (&p.accounting, p.metrics.get(metric).copied())
        }
        None => (&s.accounting, s.metrics.get(metric).copied()),
    };
    let count = match missing {
        Missing::UnacknowledgedSends => accounting.unacknowledged,
        Missing::LostDeliveries => accounting.lost,
    };
    if count == 0 {
        return None;
    }
    let answered = stats.unwrap_or_default().count;
    let of = answered + count;
    let worst = match stat {
        Stat::Min => return None,
        Stat::Mean | Stat::Max => None,
        Stat::Percentile(p) => {
            // The rank of the percentile among all of them, read among the measured ones.
            let rank = (p / 100.0 * of as f64).ceil().max(1.0);
            if answered == 0 || rank > answered as f64 {
                None
            } else {
                let q = (rank * 100.0 / answered as f64).min(100.0);
                // Without the histogram to read it from, the rule cannot be shown to hold.
                percentile(pattern.as_deref(), metric, q).map(|v| v as f64)
            }
        }
    };
    Some(Unmeasured {
        missing,
        count,
        of,
        worst,
    })
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
            let (passed, message, observed) = match unmeasured(s, &rule.subject, percentile) {
                None => (passed, message, observed),
                Some(u) => {
                    let judged = u.worst.unwrap_or(f64::INFINITY);
                    let holds = rule.op.holds(judged, rule.limit);
                    let with_them = match u.worst {
                        Some(w) => format!("it is {}", show(w, &rule.subject)),
                        None => u.missing.past_every().to_string(),
                    };
                    let why = u.missing.sentence(u.count, u.of, &with_them);
                    let message = if passed == holds {
                        format!("{message}, and {why}")
                    } else {
                        format!(
                            "{}{}: observed {} over {} only, allowed {} {}, {} {why}",
                            rule.text,
                            if holds { "" } else { " failed" },
                            observed.map_or("nothing".to_string(), |v| show(v, &rule.subject)),
                            u.missing.measured(),
                            rule.op,
                            show(rule.limit, &rule.subject),
                            if holds { "and" } else { "but" }
                        )
                    };
                    (holds, message, u.worst)
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::LatencyStats;
    use crate::scenario::threshold::parse;

    /// A run whose 1,000 acknowledged sends took 1..=1,000 ms (so its p_q is q·10 ms) and
    /// whose `unacknowledged` sends were never answered.
    fn run(unacknowledged: u64) -> Summary {
        let json = include_str!("../../tests/data/summary-min.json");
        let mut s: Summary = serde_json::from_str(json).expect("fixture");
        s.metrics.insert(
            "send".into(),
            LatencyStats {
                count: 1000,
                min_us: 1_000,
                mean_us: 500_500.0,
                p50_us: 500_000,
                p90_us: 900_000,
                p99_us: 990_000,
                p999_us: 999_000,
                max_us: 1_000_000,
            },
        );
        s.accounting.messages_sent = 1000 + unacknowledged;
        s.accounting.acked = 1000;
        s.accounting.unacknowledged = unacknowledged;
        s
    }

    /// The acknowledged sends' percentiles: q% of them took up to q·10 ms.
    fn lookup(_: Option<&str>, metric: &str, q: f64) -> Option<u64> {
        assert!(CONFIRMED_SEND_METRICS.contains(&metric) || DELIVERY_METRICS.contains(&metric));
        Some((q * 10_000.0).round() as u64)
    }

    fn verdict(s: &Summary, key: &str, cond: &str) -> Verdict {
        let rule = parse(key, cond, &[]).expect("rule");
        judge(s, &[rule], &lookup).remove(0)
    }

    #[test]
    fn send_rules_read_as_before_when_every_send_was_answered() {
        let v = verdict(&run(0), "send.p99", "< 1s");
        assert!(v.passed, "{}", v.message);
        assert_eq!(v.observed, Some(990_000.0));
        assert!(!v.message.contains("acknowledged"), "{}", v.message);
    }

    #[test]
    fn sends_never_answered_count_as_slower_than_every_answered_one() {
        // 100 of 1,100 never answered: the p50 of all is the 550th, the 55th percentile of
        // the answered ones.
        let s = run(100);
        let v = verdict(&s, "send.p50", "< 600ms");
        assert!(v.passed, "{}", v.message);
        assert_eq!(v.observed, Some(550_000.0));
        assert!(
            v.message
                .contains("100 of 1,100 sends were never acknowledged"),
            "{}",
            v.message
        );
        let v = verdict(&s, "send.p50", "< 520ms");
        assert!(!v.passed, "500 ms over the answered, 550 ms with the rest");
        assert!(
            v.message
                .contains("observed 500.00ms over the acknowledged sends only"),
            "{}",
            v.message
        );
        // The p99 of all is the 1,089th: past every answered send, whatever the limit.
        let v = verdict(&s, "send.p99", "< 1h");
        assert!(!v.passed, "{}", v.message);
        assert_eq!(v.observed, None);
        assert!(
            v.message.contains("it lies past every acknowledged send"),
            "{}",
            v.message
        );
        for key in ["send.max", "send.mean", "send_service.p99"] {
            assert!(!verdict(&s, key, "< 1h").passed, "{key}");
        }
        // The fastest answered send is still the fastest send anyone saw.
        assert!(verdict(&s, "send.min", "< 2ms").passed);
        // Deliveries are judged by what was lost, not by what sends went unanswered.
        let mut with_deliveries = s.clone();
        with_deliveries
            .metrics
            .insert("delivery".into(), s.metrics["send"]);
        assert!(verdict(&with_deliveries, "delivery.p99", "< 1s").passed);
        assert!(verdict(&s, "unacknowledged", "== 100").passed);
        assert!(!verdict(&s, "unacknowledged_rate", "< 5%").passed, "9.1%");
    }

    /// A run whose 1,000 deliveries in time took 1..=1,000 ms and of whose deliveries
    /// `lost` never came in time.
    fn delivered(lost: u64) -> Summary {
        let mut s = run(0);
        let stats = s.metrics["send"];
        s.metrics.insert("delivery".into(), stats);
        s.accounting.sent = 1000 + lost;
        s.accounting.delivered = 1000;
        s.accounting.lost = lost;
        s
    }

    #[test]
    fn lost_deliveries_count_as_slower_than_every_delivery_in_time() {
        let v = verdict(&delivered(0), "delivery.p99", "< 1s");
        assert!(v.passed && !v.message.contains("lost"), "{}", v.message);
        // 100 of 1,100 lost: the p50 of all is the 550th, the 55th percentile of the rest.
        let s = delivered(100);
        let v = verdict(&s, "delivery.p50", "< 600ms");
        assert!(v.passed, "{}", v.message);
        assert_eq!(v.observed, Some(550_000.0));
        assert!(
            v.message
                .contains("100 of 1,100 deliveries were lost (not there within the loss deadline)"),
            "{}",
            v.message
        );
        let v = verdict(&s, "delivery.p50", "< 520ms");
        assert!(!v.passed, "500 ms over those in time, 550 ms with the lost");
        assert!(
            v.message.contains(
                "observed 500.00ms over the deliveries that came in time only, allowed < 520.00ms, but 100 of 1,100"
            ),
            "{}",
            v.message
        );
        // The p99 of all is past every delivery that came: no limit holds it, as a loss of
        // 9% cannot have 99% delivered within any time.
        let v = verdict(&s, "delivery.p99", "< 1h");
        assert!(!v.passed, "{}", v.message);
        assert_eq!(v.observed, None);
        assert!(
            v.message
                .contains("it lies past every delivery that came in time"),
            "{}",
            v.message
        );
        for key in ["delivery.max", "delivery.mean"] {
            assert!(!verdict(&s, key, "< 1h").passed, "{key}");
        }
        assert!(verdict(&s, "delivery.min", "< 2ms").passed);
        // Sends are judged by their acknowledgements alone.
        assert!(verdict(&s, "send.p99", "< 1s").passed);
    }

    #[test]
    fn a_target_that_answered_no_send_fails_every_send_rule() {
        let mut s = run(50);
        s.metrics.remove("send");
        let v = verdict(&s, "send.p50", "< 1h");
        assert!(!v.passed);
        assert!(v.message.contains("50 of 50 sends"), "{}", v.message);
    }
}

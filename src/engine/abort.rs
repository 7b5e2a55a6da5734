//! `--abort-on-fail`: ends a run early when a threshold is clearly broken already — a count
//! that can only grow has passed its limit, or a latency statistic is over twice its limit
//! on enough samples — so a CI gate does not wait out a run that has failed. Owns that
//! judgement on the running totals; the final verdicts are still `report::verdict`'s.

use crate::metrics::{Metric, MetricSet};
use crate::scenario::threshold::{Op, Stat, Subject, Threshold};

/// Samples a latency statistic needs before it may end a run.
const MIN_SAMPLES: u64 = 500;

/// The first rule the totals so far break beyond doubt, with what was observed.
pub fn clearly_broken(rules: &[Threshold], totals: &MetricSet, names: &[String]) -> Option<String> {
    let c = totals.counters_total();
    for rule in rules {
        if !matches!(rule.op, Op::Lt | Op::Le | Op::Eq) {
            continue;
        }
        let observed = match &rule.subject {
            Subject::Count { name } => match name.as_str() {
                "duplicates" => c.duplicates as f64,
                "reordered" => c.reordered as f64,
                "late_sends" => c.late_sends as f64,
                "not_sent" => c.not_sent as f64,
                // Late arrivals are lost already; the rest of the loss is settled at the end.
                "delivered_late" | "loss" | "lost" => c.delivered_late as f64,
                "refused" => c.refused as f64,
                "errors" => totals.errors_total() as f64,
                _ => continue,
            },
            Subject::Latency {
                pattern,
                metric,
                stat,
            } => {
                let m = Metric::from_name(metric)?;
                let h = match pattern {
                    Some(p) => totals
                        .histogram(names.iter().position(|n| n == p)?, m)
                        .cloned(),
                    None => totals.merged(m),
                };
                let Some(h) = h.filter(|h| h.len() >= MIN_SAMPLES) else {
                    continue;
                };
                let v = match stat {
                    Stat::Min => continue,
                    Stat::Mean => h.mean(),
                    Stat::Max => h.max() as f64,
                    Stat::Percentile(q) => h.value_at_quantile(q / 100.0) as f64,
                };
                // Twice the limit: not a borderline case that more samples could settle.
                if v <= 2.0 * rule.limit {
                    continue;
                }
                v
            }
            Subject::Rate { .. } => continue,
        };
        if !rule.op.holds(observed, rule.limit) {
            return Some(format!("{} (observed {observed:.0} so far)", rule.text));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::threshold::parse;

    #[test]
    fn only_clear_breaks_end_a_run() {
        let names = vec!["p".to_string()];
        let rules = vec![
            parse("delivery.p99", "< 10ms", &names).unwrap(),
            parse("duplicates", "== 0", &names).unwrap(),
        ];
        let mut t = MetricSet::new(1);
        for _ in 0..1000 {
            t.record(0, Metric::Delivery, 15_000);
        }
        assert_eq!(
            clearly_broken(&rules, &t, &names),
            None,
            "1.5x is not clear"
        );
        for _ in 0..1000 {
            t.record(0, Metric::Delivery, 50_000);
        }
        assert!(clearly_broken(&rules, &t, &names).is_some_and(|r| r.starts_with("delivery.p99")));
        let mut t = MetricSet::new(1);
        t.counters[0].duplicates = 1;
        assert!(clearly_broken(&rules, &t, &names).is_some_and(|r| r.starts_with("duplicates")));
    }
}

//! One bundle from the segments of a split run (`chatload merge`): histograms merged
//! exactly from the segments' interval logs (merged counts are the sums; percentiles are
//! those of the combined samples), accounting and errors summed, the interval series
//! aligned on wall time, thresholds judged again on the merged data, and each segment's
//! clock offset reported. Refuses a set with a segment missing, given twice or from another
//! scenario. Owns combining; reading and writing bundles stays with `bundle`.

use super::summary::{Accounting, BusinessSummary, LatencyStats, MergedSegment, Summary};
use crate::metrics::hlog::LoggedInterval;
use crate::metrics::series::IntervalLatency;
use crate::metrics::{IntervalPoint, Series};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// One segment's bundle, read.
pub struct Part {
    pub name: String,
    pub summary: Summary,
    pub intervals: Vec<LoggedInterval>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    #[error(
        "{0} is not a segment's bundle (it was not run with --segment); merge joins the bundles of one split run"
    )]
    NotASegment(String),
    #[error("{a} and {b} come from different runs ({why}); merge the segments of one run")]
    Mismatch { a: String, b: String, why: String },
    #[error("segment {index}/{count} is given twice ({a} and {b})")]
    Duplicate {
        index: u32,
        count: u32,
        a: String,
        b: String,
    },
    #[error("segment {missing} of {count} is missing; give the bundles of all {count} segments")]
    Missing { missing: String, count: u32 },
    #[error("nothing to merge")]
    Empty,
}

pub struct Merged {
    pub summary: Summary,
    pub intervals: Vec<LoggedInterval>,
}

fn check(parts: &[Part]) -> Result<u32, MergeError> {
    let first = parts.first().ok_or(MergeError::Empty)?;
    let seg = |p: &Part| {
        p.summary
            .segment
            .clone()
            .ok_or_else(|| MergeError::NotASegment(p.name.clone()))
    };
    let count = seg(first)?.count;
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for p in parts {
        let s = seg(p)?;
        let (f, q) = (&first.summary, &p.summary);
        let why = if q.schema_version != f.schema_version {
            // A count one version keeps and the other does not would be summed as zero.
            Some(format!(
                "summaries of schema versions {} and {}, written by different chatload versions; run every segment with the same chatload",
                f.schema_version, q.schema_version
            ))
        } else if q.scenario != f.scenario {
            Some(format!("scenarios {} and {}", f.scenario, q.scenario))
        } else if q.scenario_sha256 != f.scenario_sha256 {
            Some(format!(
                "scenario files of different content, SHA-256 {} and {}",
                short(&f.scenario_sha256),
                short(&q.scenario_sha256)
            ))
        } else if q.population != f.population {
            Some(format!(
                "populations of {} and {} people (--users)",
                f.population, q.population
            ))
        } else if q.planned_duration_s != f.planned_duration_s {
            Some(format!(
                "durations of {}s and {}s (--duration)",
                f.planned_duration_s, q.planned_duration_s
            ))
        } else if p.summary.seed != first.summary.seed {
            Some(format!(
                "seeds {} and {}",
                first.summary.seed, p.summary.seed
            ))
        } else if s.count != count {
            Some(format!("split in {count} and in {}", s.count))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(MergeError::Mismatch {
                a: first.name.clone(),
                b: p.name.clone(),
                why,
            });
        }
        if let Some(a) = seen.insert(s.index, &p.name) {
            return Err(MergeError::Duplicate {
                index: s.index,
                count,
                a: a.to_string(),
                b: p.name.clone(),
            });
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            count,
        });
    }
    Ok(count)
}

/// The first 12 hex digits of a digest, enough to tell two apart in a sentence.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn add_accounting(a: &mut Accounting, b: &Accounting) {
    a.add(b);
}

fn add_counts(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_insert(0) += v;
    }
}

/// Joins the segments. Thresholds are judged again by the caller (they need the rules).
pub fn merge(mut parts: Vec<Part>) -> Result<Merged, MergeError> {
    check(&parts)?;
    parts.sort_by_key(|p| p.summary.segment.as_ref().map_or(0, |s| s.index));
    let t0 = parts
        .iter()
        .map(|p| p.summary.epoch_unix_ms)
        .fold(f64::INFINITY, f64::min);
    let offset_s = |p: &Part| (p.summary.epoch_unix_ms - t0) / 1000.0;

    // Exact histograms: every interval of every segment, shifted onto the common clock.
    let mut intervals = Vec::new();
    let mut totals: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut per_second: BTreeMap<(i64, String), Histogram<u64>> = BTreeMap::new();
    for p in &parts {
        let shift = offset_s(p);
        for i in &p.intervals {
            let sum = totals
                .entry(i.tag.clone())
                .or_insert_with(crate::metrics::new_histogram);
            let _ = sum.add(&i.histogram);
            let end = (i.start_s + i.length_s + shift).round() as i64;
            let second = per_second
                .entry((end, i.tag.clone()))
                .or_insert_with(crate::metrics::new_histogram);
            let _ = second.add(&i.histogram);
            intervals.push(LoggedInterval {
                tag: i.tag.clone(),
                start_s: i.start_s + shift,
                length_s: i.length_s,
                histogram: i.histogram.clone(),
            });
        }
    }
    intervals.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));

    let mut s = parts[0].summary.clone();
    let parts_single_pattern = s.patterns.len() == 1;
    s.metrics = totals
        .iter()
        .filter(|(k, h)| !h.is_empty() && crate::metrics::hlog::split_pattern_tag(k).is_none())
        .map(|(k, h)| (k.clone(), LatencyStats::from_histogram(h)))
        .collect();
    s.accounting = Accounting::default();
    s.errors = BTreeMap::new();
    s.error_examples = BTreeMap::new();
    s.errors_total = 0;
    s.target.webhook_redelivered = 0;
    s.users = 0;
    s.duration_s = 0.0;
    s.max_send_lag_us = 0;
    s.ended = "completed".into();
    s.schedule_uncounted_from_s = None;
    s.server = None;
    s.tcp = None;
    s.own = None;
    s.storms = Vec::new();
    for (i, p) in s.patterns.iter_mut().enumerate() {
        p.accounting = Accounting::default();
        p.counters = Default::default();
        p.errors = BTreeMap::new();
        // A business pattern's API summary is rebuilt from the summed counters below.
        p.business = None;
        // Each pattern's histograms are in the logs (`p<i>/<metric>`) when a scenario has
        // more than one pattern; with one, the pattern's are the run's.
        p.metrics = BTreeMap::new();
        for (tag, h) in &totals {
            let metric = match crate::metrics::hlog::split_pattern_tag(tag) {
                Some((pi, m)) if pi == i => m,
                None if parts_single_pattern => tag.as_str(),
                _ => continue,
            };
            if !h.is_empty() && metric != "connect" {
                p.metrics
                    .insert(metric.to_string(), LatencyStats::from_histogram(h));
            }
        }
    }
    let mut points: BTreeMap<i64, IntervalPoint> = BTreeMap::new();
    let mut segments = Vec::new();
    for part in &parts {
        let q = &part.summary;
        add_accounting(&mut s.accounting, &q.accounting);
        add_counts(&mut s.errors, &q.errors);
        s.target.webhook_redelivered += q.target.webhook_redelivered;
        // Each segment's machine counted its own; segments on one machine count each
        // other's too, so the sum is an upper bound there.
        if let Some(tcp) = &q.tcp {
            s.tcp.get_or_insert_with(Default::default).add(tcp);
        }
        if let Some(own) = &q.own {
            s.own.get_or_insert_with(Default::default).add(own);
        }
        for (k, v) in &q.error_examples {
            s.error_examples
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        s.errors_total += q.errors_total;
        s.users += q.users;
        s.duration_s = s.duration_s.max(q.duration_s + offset_s(part));
        s.max_send_lag_us = s.max_send_lag_us.max(q.max_send_lag_us);
        if q.ended != "completed" {
            s.ended = format!("{} (segment {})", q.ended, part.name);
        }
        // Where any segment's count of its unreached schedule ran out, the merged one did.
        if let Some(from) = q.schedule_uncounted_from_s.map(|f| f + offset_s(part)) {
            s.schedule_uncounted_from_s =
                Some(s.schedule_uncounted_from_s.map_or(from, |f| f.min(from)));
        }
        for (mine, theirs) in s.patterns.iter_mut().zip(&q.patterns) {
            add_accounting(&mut mine.accounting, &theirs.accounting);
            mine.counters.add(&theirs.counters);
            add_counts(&mut mine.errors, &theirs.errors);
        }
        let shift = offset_s(part);
        for pt in &q.series.points {
            let t = (pt.t_s + shift).round() as i64;
            let e = points.entry(t).or_insert_with(|| IntervalPoint {
                t_s: t as f64,
                connected: 0,
                connects: 0,
                messages_scheduled: 0,
                messages_sent: 0,
                delivered: 0,
                errors: 0,
                late_sends: 0,
                duplicates: 0,
                lost: 0,
                send: IntervalLatency::default(),
                delivery: IntervalLatency::default(),
                cpu_cores: None,
            });
            e.connected += pt.connected;
            e.connects += pt.connects;
            e.messages_scheduled += pt.messages_scheduled;
            e.messages_sent += pt.messages_sent;
            e.delivered += pt.delivered;
            e.errors += pt.errors;
            e.late_sends += pt.late_sends;
            e.duplicates += pt.duplicates;
            e.lost += pt.lost;
            // Each segment is a process of its own: their cores add up.
            if let Some(c) = pt.cpu_cores {
                e.cpu_cores = Some(crate::metrics::round3(e.cpu_cores.unwrap_or(0.0) + c));
            }
        }
        segments.push(MergedSegment {
            bundle: part.name.clone(),
            index: q.segment.as_ref().map_or(0, |g| g.index),
            epoch_offset_ms: q.epoch_unix_ms - t0,
            start_offset_ms: q.segment.as_ref().and_then(|g| g.start_offset_ms),
            messages_sent: q.accounting.messages_sent,
        });
    }
    // Every segment runs the same scenario: a business pattern's API summary is rebuilt
    // once from the counters summed above.
    for (mine, first) in s.patterns.iter_mut().zip(&parts[0].summary.patterns) {
        if first.business.is_some() {
            mine.business = Some(BusinessSummary::build(&mine.counters));
        }
    }
    for (t, p) in points.iter_mut() {
        p.send = IntervalLatency::of(per_second.get(&(*t, "send".to_string())));
        p.delivery = IntervalLatency::of(per_second.get(&(*t, "delivery".to_string())));
    }
    s.series = Series {
        interval_s: parts[0].summary.series.interval_s,
        points: points.into_values().collect(),
    };
    s.peak_connected = s
        .series
        .points
        .iter()
        .map(|p| p.connected)
        .max()
        .unwrap_or(0);
    let secs = s.duration_s.max(1e-9);
    s.messages_per_s = s.accounting.messages_sent as f64 / secs;
    s.deliveries_per_s = s.accounting.delivered as f64 / secs;
    for p in &mut s.patterns {
        p.messages_per_s = p.accounting.messages_sent as f64 / secs;
    }
    s.epoch_unix_ms = t0;
    s.segment = None;
    s.merged_from = segments;
    Ok(Merged {
        summary: s,
        intervals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::SegmentRun;

    fn part(index: u32, count: u32, values: &[u64], epoch_ms: f64) -> Part {
        let json = include_str!("../../tests/data/summary-min.json");
        let mut summary: Summary = serde_json::from_str(json).expect("fixture");
        summary.segment = Some(SegmentRun {
            index,
            count,
            start_at: None,
            start_offset_ms: Some(1.5),
        });
        summary.epoch_unix_ms = epoch_ms;
        summary.accounting.messages_sent = values.len() as u64;
        summary.accounting.sent = values.len() as u64;
        summary.accounting.delivered = values.len() as u64;
        let mut intervals = Vec::new();
        for (second, chunk) in values.chunks(100).enumerate() {
            let mut h = crate::metrics::new_histogram();
            for v in chunk {
                h.record(*v).unwrap();
            }
            intervals.push(LoggedInterval {
                tag: "delivery".into(),
                start_s: second as f64,
                length_s: 1.0,
                histogram: h,
            });
        }
        Part {
            name: format!("seg{index}"),
            summary,
            intervals,
        }
    }

    #[test]
    fn histograms_merge_exactly() {
        // Three segments with different distributions: the merged percentiles are those of
        // all samples together, not an average of the segments' percentiles.
        let a: Vec<u64> = (1..=1000).map(|i| i * 10).collect();
        let b: Vec<u64> = (1..=500).map(|i| 50_000 + i * 3).collect();
        let c: Vec<u64> = (1..=250).map(|i| 7 * i).collect();
        let mut all = crate::metrics::new_histogram();
        for v in a.iter().chain(&b).chain(&c) {
            all.record(*v).unwrap();
        }
        let m = merge(vec![
            part(1, 3, &b, 1_000_250.0),
            part(0, 3, &a, 1_000_000.0),
            part(2, 3, &c, 1_000_100.0),
        ])
        .unwrap();
        let d = &m.summary.metrics["delivery"];
        assert_eq!(d.count, 1750);
        assert_eq!(d.p50_us, all.value_at_quantile(0.5));
        assert_eq!(d.p99_us, all.value_at_quantile(0.99));
        assert_eq!(d.max_us, all.max());
        assert_eq!(d.min_us, all.min());
        assert_eq!(m.summary.accounting.messages_sent, 1750);
        // Clocks: offsets from the earliest segment, in segment order.
        let offsets: Vec<(u32, f64)> = m
            .summary
            .merged_from
            .iter()
            .map(|s| (s.index, s.epoch_offset_ms))
            .collect();
        assert_eq!(offsets, [(0, 0.0), (1, 250.0), (2, 100.0)]);
        assert!(m.summary.segment.is_none());
        // Intervals moved onto the common clock, in time order.
        assert!(m.intervals.windows(2).all(|w| w[0].start_s <= w[1].start_s));
        assert!(m.intervals.iter().any(|i| (i.start_s - 0.25).abs() < 1e-9));
    }

    #[test]
    fn incomplete_or_doubled_sets_are_refused() {
        let v = [100u64, 200];
        let missing = merge(vec![part(0, 3, &v, 0.0), part(2, 3, &v, 0.0)]);
        assert!(
            matches!(missing, Err(MergeError::Missing { ref missing, count: 3 }) if missing == "1/3")
        );
        let twice = merge(vec![
            part(0, 2, &v, 0.0),
            part(0, 2, &v, 0.0),
            part(1, 2, &v, 0.0),
        ]);
        assert!(matches!(twice, Err(MergeError::Duplicate { index: 0, .. })));
        let mut other = part(1, 2, &v, 0.0);
        other.summary.seed += 1;
        assert!(matches!(
            merge(vec![part(0, 2, &v, 0.0), other]),
            Err(MergeError::Mismatch { .. })
        ));
        let mut older = part(1, 2, &v, 0.0);
        older.summary.schema_version -= 1;
        let mixed = merge(vec![part(0, 2, &v, 0.0), older]);
        assert!(
            matches!(mixed, Err(MergeError::Mismatch { ref why, .. }) if why.contains("schema versions")),
            "a segment without a count the other keeps is not summed as zero"
        );
        let mut whole = part(1, 2, &v, 0.0);
        whole.summary.segment = None;
        assert!(matches!(
            merge(vec![part(0, 2, &v, 0.0), whole]),
            Err(MergeError::NotASegment(_))
        ));
        assert_eq!(merge(Vec::new()).err(), Some(MergeError::Empty));
    }
}

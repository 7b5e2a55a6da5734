//! `chatload compare`: a candidate run against one or more baseline runs, metric by metric,
//! as a regression gate. Owns what counts as worse and by how much, and the noise rule: with
//! several baselines, a candidate inside their spread is never a regression.

use super::summary::Summary;
use crate::human::format_us;
use crate::human::thousands;
use std::fmt::Write as _;

/// Which way is worse for a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Worse {
    Higher,
    Lower,
}

/// One compared quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// `delivery.p99`, `messages_per_s`, `loss_rate`, …
    pub name: String,
    /// The baselines' median (the reference), and their spread.
    pub baseline: f64,
    pub spread: (f64, f64),
    pub candidate: f64,
    /// Relative change against the reference (0.1 = 10% higher).
    pub change: f64,
    pub worse: Worse,
    pub gated: bool,
    pub verdict: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Regressed,
    Improved,
    /// Within the tolerance, or inside the baselines' spread.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub candidate: String,
    pub baselines: usize,
    pub tolerance: f64,
    pub deltas: Vec<Delta>,
    /// Gated quantities the candidate has and no baseline records (a summary written before
    /// its schema counted it): not compared, and said so.
    pub not_compared: Vec<String>,
}

impl Comparison {
    pub fn regressed(&self) -> bool {
        self.deltas
            .iter()
            .any(|d| d.gated && d.verdict == Change::Regressed)
    }
}

/// Gated by default: the numbers a messaging SLO is written in.
pub const DEFAULT_GATED: &[&str] = &[
    "delivery.p99",
    "send.p99",
    "messages_per_s",
    "loss_rate",
    "error_rate",
    // A send never acknowledged has no place in `send.p99`: a target that stops answering
    // some sends would otherwise look as fast, or faster.
    "unacknowledged_rate",
];

/// Rates below this many percentage points apart are the same (0 vs 0.0001%).
const RATE_FLOOR: f64 = 0.001;

fn quantities(s: &Summary) -> Vec<(String, f64, Worse)> {
    let mut out = Vec::new();
    for (metric, m) in &s.metrics {
        if m.count == 0 {
            continue;
        }
        for (stat, v) in [
            ("p50", m.p50_us),
            ("p90", m.p90_us),
            ("p99", m.p99_us),
            ("p999", m.p999_us),
            ("max", m.max_us),
        ] {
            out.push((format!("{metric}.{stat}"), v as f64, Worse::Higher));
        }
    }
    let a = &s.accounting;
    let pct = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            n as f64 * 100.0 / of as f64
        }
    };
    out.push(("messages_per_s".into(), s.messages_per_s, Worse::Lower));
    out.push(("deliveries_per_s".into(), s.deliveries_per_s, Worse::Lower));
    out.push(("loss_rate".into(), pct(a.lost, a.sent), Worse::Higher));
    out.push((
        "error_rate".into(),
        pct(s.errors_total, a.messages_sent.max(1)),
        Worse::Higher,
    ));
    out.push((
        "duplicate_rate".into(),
        pct(a.duplicated, a.delivered),
        Worse::Higher,
    ));
    // Counted since schema 6: an older summary's zero means "not counted", not "none".
    if s.schema_version >= 6 {
        out.push((
            "unacknowledged_rate".into(),
            pct(a.unacknowledged, a.messages_sent),
            Worse::Higher,
        ));
    }
    out.push((
        "late_send_rate".into(),
        pct(a.late_sends, a.messages_sent),
        Worse::Higher,
    ));
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Compares `candidate` with `baselines`; `tolerance` is the allowed relative change (0.1
/// for 10%); `gated` names the quantities that decide the verdict.
pub fn compare(
    baselines: &[Summary],
    candidate: &Summary,
    tolerance: f64,
    gated: &[String],
) -> Comparison {
    let mut deltas = Vec::new();
    let mut not_compared = Vec::new();
    for (name, cand, worse) in quantities(candidate) {
        let mut values: Vec<f64> = baselines
            .iter()
            .filter_map(|b| {
                quantities(b)
                    .into_iter()
                    .find(|(n, _, _)| *n == name)
                    .map(|(_, v, _)| v)
            })
            .collect();
        if values.is_empty() {
            if gated.contains(&name) {
                not_compared.push(name);
            }
            continue;
        }
        let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let reference = median(&mut values);
        let change = if reference == 0.0 {
            if cand == 0.0 { 0.0 } else { f64::INFINITY }
        } else {
            cand / reference - 1.0
        };
        let is_rate = name.ends_with("_rate");
        let (bad, good) = match worse {
            Worse::Higher => (
                cand > hi && change > tolerance && (!is_rate || cand - hi > RATE_FLOOR),
                cand < lo && change < -tolerance && (!is_rate || lo - cand > RATE_FLOOR),
            ),
            Worse::Lower => (
                cand < lo && change < -tolerance,
                cand > hi && change > tolerance,
            ),
        };
        deltas.push(Delta {
            gated: gated.contains(&name),
            verdict: if bad {
                Change::Regressed
            } else if good {
                Change::Improved
            } else {
                Change::Unchanged
            },
            name,
            baseline: reference,
            spread: (lo, hi),
            candidate: cand,
            change,
            worse,
        });
    }
    Comparison {
        candidate: candidate.scenario.clone(),
        baselines: baselines.len(),
        tolerance,
        deltas,
        not_compared,
    }
}

fn value(name: &str, v: f64) -> String {
    if name.ends_with("_rate") {
        format!("{v:.3}%")
    } else if name.ends_with("_per_s") {
        format!("{v:.1}/s")
    } else {
        format_us(v)
    }
}

/// Markdown for a pull request: gated quantities first, then every change beyond tolerance.
pub fn render_markdown(c: &Comparison) -> String {
    let mut o = String::new();
    let verdict = if c.regressed() {
        "❌ regression"
    } else {
        "✅ no regression"
    };
    let _ = writeln!(
        o,
        "## chatload compare: {} — {verdict}\n\nCandidate against {} baseline run{} · tolerance {:.0}%{}\n",
        c.candidate,
        thousands(c.baselines as u64),
        if c.baselines == 1 { "" } else { "s" },
        c.tolerance * 100.0,
        if c.baselines > 1 {
            " · changes inside the baselines' spread are noise"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "| quantity | baseline | candidate | change | verdict |\n|---|---:|---:|---:|---|"
    );
    let shown = c.deltas.iter().filter(|d| d.gated).chain(
        c.deltas
            .iter()
            .filter(|d| !d.gated && d.verdict != Change::Unchanged),
    );
    for d in shown {
        let base = if c.baselines > 1 {
            format!(
                "{} ({} … {})",
                value(&d.name, d.baseline),
                value(&d.name, d.spread.0),
                value(&d.name, d.spread.1)
            )
        } else {
            value(&d.name, d.baseline)
        };
        let change = if d.change.is_finite() {
            format!("{:+.1}%", d.change * 100.0)
        } else {
            "new".to_string()
        };
        let verdict = match (d.verdict, d.gated) {
            (Change::Regressed, true) => "❌ regressed",
            (Change::Regressed, false) => "⚠️ worse (not gated)",
            (Change::Improved, _) => "✅ improved",
            (Change::Unchanged, _) => "= same",
        };
        let _ = writeln!(
            o,
            "| `{}` | {base} | {} | {change} | {verdict} |",
            d.name,
            value(&d.name, d.candidate)
        );
    }
    if !c.not_compared.is_empty() {
        let names: Vec<String> = c.not_compared.iter().map(|n| format!("`{n}`")).collect();
        let _ = writeln!(
            o,
            "\nNot compared, since no baseline records {}: {} (baselines written by an older chatload)",
            if names.len() == 1 { "it" } else { "them" },
            names.join(", ")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::LatencyStats;

    fn run(p99_ms: u64, rate: f64, lost: u64) -> Summary {
        let json = include_str!("../../tests/data/summary-min.json");
        let mut s: Summary = serde_json::from_str(json).expect("fixture");
        s.metrics.insert(
            "delivery".into(),
            LatencyStats {
                count: 1000,
                min_us: 100,
                mean_us: 500.0,
                p50_us: 400,
                p90_us: 800,
                p99_us: p99_ms * 1000,
                p999_us: p99_ms * 1000,
                max_us: p99_ms * 1000,
            },
        );
        s.messages_per_s = rate;
        s.accounting.sent = 10_000;
        s.accounting.lost = lost;
        s
    }

    fn gated() -> Vec<String> {
        DEFAULT_GATED.iter().map(|s| s.to_string()).collect()
    }

    fn verdict(c: &Comparison, name: &str) -> Change {
        c.deltas.iter().find(|d| d.name == name).unwrap().verdict
    }

    #[test]
    fn equal_runs_do_not_regress() {
        let c = compare(&[run(10, 100.0, 0)], &run(10, 100.0, 0), 0.1, &gated());
        assert!(!c.regressed());
        assert_eq!(verdict(&c, "delivery.p99"), Change::Unchanged);
    }

    #[test]
    fn a_real_regression_is_caught_and_an_improvement_is_not_one() {
        let c = compare(&[run(10, 100.0, 0)], &run(13, 100.0, 0), 0.1, &gated());
        assert!(c.regressed());
        assert_eq!(verdict(&c, "delivery.p99"), Change::Regressed);
        let c = compare(&[run(10, 100.0, 0)], &run(7, 120.0, 0), 0.1, &gated());
        assert!(!c.regressed());
        assert_eq!(verdict(&c, "delivery.p99"), Change::Improved);
        assert_eq!(verdict(&c, "messages_per_s"), Change::Improved);
        let c = compare(&[run(10, 100.0, 0)], &run(10, 80.0, 0), 0.1, &gated());
        assert_eq!(
            verdict(&c, "messages_per_s"),
            Change::Regressed,
            "throughput fell"
        );
        let c = compare(&[run(10, 100.0, 0)], &run(10, 100.0, 5), 0.1, &gated());
        assert_eq!(verdict(&c, "loss_rate"), Change::Regressed, "loss appeared");
        assert!(render_markdown(&c).contains("❌ regressed"));
    }

    #[test]
    fn sends_left_unacknowledged_are_a_regression_by_default() {
        // The same send.p99 over the answered sends: without the rate, nothing would show.
        let mut candidate = run(10, 100.0, 0);
        candidate.schema_version = crate::report::summary::SCHEMA_VERSION;
        candidate.accounting.messages_sent = 1_000;
        candidate.accounting.unacknowledged = 50;
        let mut base = run(10, 100.0, 0);
        base.accounting.messages_sent = 1_000;
        // A baseline from before the count: its zero is not a measurement.
        let c = compare(std::slice::from_ref(&base), &candidate, 0.1, &gated());
        assert!(!c.regressed());
        assert_eq!(c.not_compared, ["unacknowledged_rate"]);
        assert!(
            render_markdown(&c)
                .contains("Not compared, since no baseline records it: `unacknowledged_rate`")
        );
        base.schema_version = crate::report::summary::SCHEMA_VERSION;
        let c = compare(&[base], &candidate, 0.1, &gated());
        assert!(c.regressed());
        assert!(c.not_compared.is_empty());
        assert_eq!(verdict(&c, "unacknowledged_rate"), Change::Regressed);
    }

    #[test]
    fn a_change_inside_the_baselines_spread_is_noise() {
        let baselines = [run(10, 100.0, 0), run(14, 100.0, 0), run(11, 100.0, 0)];
        // 13 ms is 18% above the median of 11 ms, but a baseline itself reached 14 ms.
        let c = compare(&baselines, &run(13, 100.0, 0), 0.1, &gated());
        assert_eq!(verdict(&c, "delivery.p99"), Change::Unchanged);
        assert!(!c.regressed());
        // Beyond the spread and the tolerance: a regression.
        let c = compare(&baselines, &run(16, 100.0, 0), 0.1, &gated());
        assert!(c.regressed());
        // A single baseline has no spread: the same 13 ms is a regression against 11.
        let c = compare(&[run(11, 100.0, 0)], &run(13, 100.0, 0), 0.1, &gated());
        assert!(c.regressed());
    }
}

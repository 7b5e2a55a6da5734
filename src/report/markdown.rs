//! `summary.md`: the run in Markdown for a CI step summary or a pull-request comment.

use super::console::thousands;
use super::summary::Summary;
use super::verdict::format_us;
use std::fmt::Write as _;

pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let a = &s.accounting;
    let verdict = if s.passed { "✅ passed" } else { "❌ failed" };
    let _ = writeln!(o, "## chatload: {} — {verdict}\n", s.scenario);
    let _ = writeln!(
        o,
        "Seed {} · {:.1} s · {} · {} users · {:.1} messages/s · {:.1} deliveries/s\n",
        s.seed, s.duration_s, s.ended, s.users, s.messages_per_s, s.deliveries_per_s
    );
    let _ = writeln!(o, "| metric | count | p50 | p90 | p99 | p99.9 | max |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|");
    for (name, m) in &s.metrics {
        let _ = writeln!(
            o,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            thousands(m.count),
            format_us(m.p50_us as f64),
            format_us(m.p90_us as f64),
            format_us(m.p99_us as f64),
            format_us(m.p999_us as f64),
            format_us(m.max_us as f64)
        );
    }
    let _ = writeln!(
        o,
        "\n**Accounting:** sent {} = delivered {} + lost {} + in flight {} · duplicates {} · reordered {} · late sends {} · errors {}\n",
        thousands(a.sent),
        thousands(a.delivered),
        thousands(a.lost),
        thousands(a.in_flight),
        thousands(a.duplicated),
        thousands(a.reordered),
        thousands(a.late_sends),
        thousands(s.errors_total)
    );
    if !s.thresholds.is_empty() {
        let _ = writeln!(o, "| threshold | result |\n|---|---|");
        for v in &s.thresholds {
            let _ = writeln!(
                o,
                "| `{}` | {} {} |",
                v.rule,
                if v.passed { "✅" } else { "❌" },
                v.message
            );
        }
    }
    o
}

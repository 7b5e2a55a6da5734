//! `summary.md`: the run in Markdown for a CI step summary or a pull-request comment.

use super::escape::markdown as md;
use super::summary::Summary;
use crate::human::format_us;
use crate::human::thousands;
use std::fmt::Write as _;

pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let a = &s.accounting;
    let verdict = if s.passed { "✅ passed" } else { "❌ failed" };
    let _ = writeln!(o, "## chatload: {} — {verdict}\n", md(&s.scenario));
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
        "\n**Accounting:** {} · {} · duplicates {} · reordered {} · late sends {} · refused {} · errors {}\n",
        super::console::delivery_identity(a),
        super::console::schedule_identity(a),
        thousands(a.duplicated),
        thousands(a.reordered),
        thousands(a.late_sends),
        thousands(a.refused),
        thousands(s.errors_total)
    );
    if let Some(note) = super::console::unacknowledged_note(s) {
        let _ = writeln!(o, "{}\n", md(&note));
    }
    if let Some(note) = super::console::earlier_runs_note(a) {
        let _ = writeln!(o, "{}\n", md(&note));
    }
    if let Some(note) = super::console::local_limit_note(s) {
        let _ = writeln!(o, "{}\n", md(&note));
    }
    if let Some(note) = super::console::kernel_tcp_note(s) {
        let _ = writeln!(o, "{}\n", md(&note));
    }
    if let Some(note) = super::console::own_usage_note(s) {
        let _ = writeln!(o, "{}\n", md(&note));
    }
    let by_pattern = super::console::errors_by_pattern(s);
    if !by_pattern.is_empty() {
        let _ = writeln!(o, "**Errors:** {}\n", md(&by_pattern.join(" · ")));
    }
    let business: Vec<_> = s
        .patterns
        .iter()
        .filter_map(|p| p.business.map(|b| (p.name.as_str(), b)))
        .collect();
    if !business.is_empty() {
        let _ = writeln!(
            o,
            "| business pattern | requests | accepted | 130429 | 131056 | 131047 | 5xx | timeouts | sent / delivered / read / failed | duplicates |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"
        );
        for (name, b) in business {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} |",
                md(name),
                thousands(b.requests),
                thousands(b.accepted),
                thousands(b.throttled_130429),
                thousands(b.pair_limited_131056),
                thousands(b.outside_window_131047),
                thousands(b.server_errors_5xx),
                thousands(b.timeouts),
                thousands(b.status_sent),
                thousands(b.status_delivered),
                thousands(b.status_read),
                thousands(b.status_failed),
                thousands(b.duplicates)
            );
        }
        let _ = writeln!(o);
    }
    if !s.thresholds.is_empty() {
        let _ = writeln!(o, "| threshold | result |\n|---|---|");
        for v in &s.thresholds {
            let _ = writeln!(
                o,
                "| `{}` | {} {} |",
                v.rule.replace('|', "\\|"),
                if v.passed { "✅" } else { "❌" },
                md(&v.message)
            );
        }
    }
    o
}

/// Bytes in a human unit (media volumes).
pub fn bytes(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2} GB", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} kB", x / 1e3)
    } else {
        format!("{n} B")
    }
}

//! `report.html`: one self-contained page a person reads after a run — verdict and
//! thresholds first, then throughput, latency percentiles over time per metric, the
//! percentile spectrum, trouble over time, per-pattern tables and where the run came from.
//! Built from `summary.json` and the interval log, so `chatload report` can render it again.
//! No scripts, fonts or images are fetched: styles and charts are inline.

use super::escape::xml;
use super::summary::Summary;
use super::svg::{Axis, Line, PALETTE, line_chart};
use crate::human::format_us;
use crate::human::thousands;
use crate::metric::{CHART_ORDER, Metric};
use crate::metrics::hlog::{Digest, IntervalQuantiles};
use std::fmt::Write as _;

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#111827;background:#f9fafb}\
main{max-width:980px;margin:0 auto;padding:24px}h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}\
.meta{color:#4b5563}.pass{color:#15803d}.fail{color:#b91c1c}table{border-collapse:collapse;width:100%;background:#fff;margin:6px 0 12px}\
th,td{padding:5px 8px;border-bottom:1px solid #e5e7eb;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}th{background:#f3f4f6;font-weight:600}\
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:6px 0 14px}.grid{stroke:#e5e7eb;stroke-width:1}.tick{font-size:11px;fill:#6b7280}\
.axis{font-size:12px;fill:#374151}.ct{font-size:13px;font-weight:600;fill:#111827}.legend{font-size:12px;fill:#374151}.empty{font-size:13px;fill:#9ca3af}\
.note{color:#4b5563;font-size:13px}code{background:#f3f4f6;padding:1px 4px;border-radius:3px}";

fn us_axis(label: &str, log: bool) -> Axis {
    Axis {
        label: label.into(),
        log,
        format: format_us,
        ticks: None,
    }
}

fn time_axis() -> Axis {
    Axis {
        label: "seconds into the run".into(),
        log: false,
        format: |v| format!("{v:.0}"),
        ticks: None,
    }
}

fn count_axis(label: &str) -> Axis {
    Axis {
        label: label.into(),
        log: false,
        format: |v| {
            if v >= 1e6 {
                format!("{:.1}M", v / 1e6)
            } else if v >= 1e4 {
                format!("{:.0}k", v / 1e3)
            } else {
                format!("{v:.0}")
            }
        },
        ticks: None,
    }
}

/// chatload's own CPU per second, when the series has it.
fn own_cpu_chart(s: &Summary) -> String {
    let cpu: Vec<(f64, f64)> = s
        .series
        .points
        .iter()
        .filter_map(|p| p.cpu_cores.map(|c| (p.t_s, c)))
        .collect();
    if cpu.is_empty() {
        return String::new();
    }
    let title = if s.target.embedded {
        "chatload's own CPU per second, in cores (the embedded server's included)"
    } else {
        "chatload's own CPU per second, in cores"
    };
    let cores = Axis {
        label: "cores".into(),
        log: false,
        format: |v| format!("{v:.2}"),
        ticks: None,
    };
    let chart = line_chart(
        "generator",
        title,
        &time_axis(),
        &cores,
        &[Line {
            label: "chatload CPU".into(),
            color: PALETTE[0],
            points: cpu,
        }],
    );
    format!("<section id=\"generator\"><h2>chatload itself</h2>{chart}</section>")
}

/// The page for `s`, with per-interval histograms from its `latency.hlog`.
pub fn render(s: &Summary, log: &Digest) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let verdict = if s.passed {
        "<span class=\"pass\">✔ passed</span>"
    } else {
        "<span class=\"fail\">✘ failed</span>"
    };
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>chatload · {}</title><style>{STYLE}</style></head><body><main>",
        xml(&s.scenario)
    );
    let _ = write!(
        o,
        "<h1>{} — {verdict}</h1><p class=\"meta\">{} · seed {} · started {} · {:.1} s · {} · target <code>{}</code>{}</p>",
        xml(&s.scenario),
        xml(&s.scenario_file),
        s.seed,
        xml(&s.started_at),
        s.duration_s,
        xml(&s.ended),
        xml(&s.target.url),
        if s.target.embedded { " (embedded)" } else { "" }
    );
    let a = &s.accounting;
    let _ = write!(
        o,
        "<p>{} users (peak connected {}) · {} messages ({:.1}/s) · {} deliveries ({:.1}/s) · lost <b>{}</b> · duplicates {} · late sends {} · errors {}</p>",
        thousands(s.users as u64),
        thousands(s.peak_connected),
        thousands(a.messages_sent),
        s.messages_per_s,
        thousands(a.delivered),
        s.deliveries_per_s,
        thousands(a.lost),
        thousands(a.duplicated),
        thousands(a.late_sends),
        thousands(s.errors_total)
    );

    o.push_str("<section id=\"thresholds\"><h2>Thresholds</h2>");
    if s.thresholds.is_empty() {
        o.push_str("<p class=\"note\">No thresholds were set (add a [thresholds] table or --threshold).</p>");
    } else {
        o.push_str("<table><tr><th>rule</th><th>result</th><th>observed</th><th>allowed</th></tr>");
        for v in &s.thresholds {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                xml(&v.rule),
                if v.passed { "pass" } else { "fail" },
                if v.passed { "✔ passed" } else { "✘ failed" },
                v.observed.map_or("–".into(), |x| value(&v.unit, x)),
                value(&v.unit, v.limit)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    let pts = &s.series.points;
    let series = |f: fn(&crate::metrics::IntervalPoint) -> u64| -> Vec<(f64, f64)> {
        pts.iter().map(|p| (p.t_s, f(p) as f64)).collect()
    };
    o.push_str("<section id=\"throughput\"><h2>Throughput</h2>");
    o.push_str(&line_chart(
        "throughput",
        "Messages per second",
        &time_axis(),
        &count_axis("per second"),
        &[
            Line {
                label: "sent".into(),
                color: PALETTE[0],
                points: series(|p| p.messages_sent),
            },
            Line {
                label: "delivered".into(),
                color: PALETTE[1],
                points: series(|p| p.delivered),
            },
            Line {
                label: "errors".into(),
                color: PALETTE[2],
                points: series(|p| p.errors),
            },
        ],
    ));
    o.push_str("</section>");

    let by_tag = &log.over_time;
    o.push_str("<section id=\"latency\"><h2>Latency over time</h2><p class=\"note\">Every latency counts from the message's intended send time. Percentiles per one-second interval, logarithmic scale.</p>");
    for metric in CHART_ORDER.iter().map(|m| m.name()) {
        let Some(list) = by_tag.get(metric) else {
            continue;
        };
        let line = |label: &str, color, v: fn(&IntervalQuantiles) -> u64| Line {
            label: label.into(),
            color,
            points: list.iter().map(|i| (i.end_s, v(i).max(1) as f64)).collect(),
        };
        o.push_str(&line_chart(
            &format!("latency-{metric}"),
            &format!("{metric}: p50, p90, p99, max"),
            &time_axis(),
            &us_axis("latency", true),
            &[
                line("p50", PALETTE[0], |i| i.p50_us),
                line("p90", PALETTE[1], |i| i.p90_us),
                line("p99", PALETTE[4], |i| i.p99_us),
                line("max", PALETTE[2], |i| i.max_us),
            ],
        ));
    }
    o.push_str("</section>");

    let all = &log.totals;
    let nines: [f64; 7] = [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999];
    let tick_x = |q: f64| 1.0 / (1.0 - q);
    let spectrum: Vec<Line> = CHART_ORDER
        .iter()
        .filter(|m| {
            !matches!(
                m,
                Metric::SendLag | Metric::ReadLag | Metric::Connect | Metric::Reconnect
            )
        })
        .filter_map(|m| all.get(m.name()).map(|h| (m.name(), h)))
        .take(PALETTE.len())
        .enumerate()
        .map(|(k, (m, h))| Line {
            label: m.to_string(),
            color: PALETTE[k],
            points: (0..=50)
                .map(|step| 1.0 - 10f64.powf(-(step as f64) / 10.0))
                .map(|q| (tick_x(q), h.value_at_quantile(q).max(1) as f64))
                .collect(),
        })
        .collect();
    o.push_str("<section id=\"spectrum\"><h2>Percentile spectrum</h2>");
    o.push_str(&line_chart(
        "spectrum",
        "Latency by percentile (whole run)",
        &Axis {
            label: "percentile".into(),
            log: true,
            format: |v| format!("{v}"),
            ticks: Some(
                nines
                    .iter()
                    .map(|q| {
                        let label = format!("{}%", (q * 100.0 * 1000.0).round() / 1000.0);
                        (tick_x(*q), label)
                    })
                    .collect(),
            ),
        },
        &us_axis("latency", true),
        &spectrum,
    ));
    o.push_str("</section>");

    o.push_str("<section id=\"trouble\"><h2>Loss, duplicates and late sends</h2>");
    // The console's wording, so the identities read the same everywhere.
    let _ = write!(
        o,
        "<p>Accounting: {}</p><p>{}</p>",
        xml(&super::console::delivery_identity(a)),
        xml(&super::console::schedule_identity(a))
    );
    if let Some(note) = super::console::unacknowledged_note(s) {
        let _ = write!(o, "<p>{}</p>", xml(&note));
    }
    if let Some(note) = super::console::earlier_runs_note(a) {
        let _ = write!(o, "<p>{}</p>", xml(&note));
    }
    if let Some(note) = super::console::local_limit_note(s) {
        let _ = write!(o, "<p>{}</p>", xml(&note));
    }
    if let Some(note) = super::console::kernel_tcp_note(s) {
        let _ = write!(o, "<p>{}</p>", xml(&note));
    }
    if let Some(note) = super::console::own_usage_note(s) {
        let _ = write!(o, "<p>{}</p>", xml(&note));
    }
    o.push_str(&line_chart(
        "trouble",
        "Trouble per second (loss by the second its messages were meant to leave)",
        &time_axis(),
        &count_axis("per second"),
        &[
            Line {
                label: "lost".into(),
                color: PALETTE[0],
                points: series(|p| p.lost),
            },
            Line {
                label: "duplicates".into(),
                color: PALETTE[3],
                points: series(|p| p.duplicates),
            },
            Line {
                label: "late sends".into(),
                color: PALETTE[4],
                points: series(|p| p.late_sends),
            },
            Line {
                label: "errors".into(),
                color: PALETTE[2],
                points: series(|p| p.errors),
            },
        ],
    ));
    o.push_str("</section>");
    o.push_str(&own_cpu_chart(s));

    o.push_str("<section id=\"patterns\"><h2>Patterns</h2>");
    for p in &s.patterns {
        let pa = &p.accounting;
        let _ = write!(
            o,
            "<h3>{} <span class=\"meta\">({})</span></h3><p>{:.1} messages/s · sent {} · delivered {} · lost {} ({} arrived late) · in flight {} · unverified {} · not sent {} · duplicates {} · reordered {}</p>",
            xml(&p.name),
            xml(&p.kind),
            p.messages_per_s,
            thousands(pa.sent),
            thousands(pa.delivered),
            thousands(pa.lost),
            thousands(pa.delivered_late),
            thousands(pa.in_flight),
            thousands(pa.unverified),
            thousands(pa.not_sent),
            thousands(pa.duplicated),
            thousands(pa.reordered)
        );
        if !p.metrics.is_empty() {
            o.push_str("<table><tr><th>metric</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
            for (name, m) in &p.metrics {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    xml(name),
                    thousands(m.count),
                    format_us(m.p50_us as f64),
                    format_us(m.p90_us as f64),
                    format_us(m.p99_us as f64),
                    format_us(m.p999_us as f64),
                    format_us(m.max_us as f64)
                );
            }
            o.push_str("</table>");
        }
        if !p.errors.is_empty() {
            let _ = write!(
                o,
                "<p>Errors: {}</p>",
                xml(&super::console::error_counts(&p.errors))
            );
        }
        if let Some(b) = &p.business {
            let (requests, statuses) = super::console::business_lines(b);
            let _ = write!(
                o,
                "<p>Business API: {} · {}</p>",
                xml(&requests),
                xml(&statuses)
            );
        }
    }
    o.push_str("</section>");

    o.push_str("<section id=\"run\"><h2>The run</h2><table>");
    let machine = s.machine.as_ref();
    for (k, v) in [
        ("scenario file", s.scenario_file.clone()),
        ("seed", s.seed.to_string()),
        ("started (UTC)", s.started_at.clone()),
        ("target", s.target.url.clone()),
        (
            "machine",
            machine.map_or("unknown".into(), |m| {
                let workers = m
                    .workers
                    .map_or(String::new(), |w| format!(" · {w} threads"));
                format!(
                    "{} · {} {} · {} CPUs{workers}",
                    m.host, m.os, m.arch, m.cpus
                )
            }),
        ),
        ("chatload", machine.map_or("".into(), |m| m.version.clone())),
    ] {
        let _ = write!(o, "<tr><td>{k}</td><td>{}</td></tr>", xml(&v));
    }
    o.push_str("</table></section></main></body></html>\n");
    o
}

fn value(unit: &str, v: f64) -> String {
    match unit {
        "us" => format_us(v),
        "percent" => format!("{v:.3}%"),
        _ => thousands(v.max(0.0) as u64),
    }
}

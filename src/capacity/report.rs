//! What a capacity search found, for people and machines: `capacity.json` (every step),
//! `capacity.md`, and `capacity.html` with the hockey stick (latency percentiles against
//! offered load) and throughput against offered load. Owns rendering; not the search.

use super::{Capacity, CapacityError, Limit, Step};
use crate::report::svg::{Axis, Line, PALETTE, line_chart};
use std::fmt::Write as _;
use std::path::Path;

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{}/s", crate::human::thousands(r.round() as u64))
    } else {
        format!("{r:.1}/s")
    }
}

/// One sentence: what holds, and what broke it.
pub fn verdict(c: &Capacity) -> String {
    let held = match &c.sustainable {
        Some(s) => format!(
            "sustainable: {} messages ({} deliveries) at {:.2}× the scenario's load, {} p99 {}",
            rate(s.messages_per_s),
            rate(s.deliveries_per_s),
            s.multiplier,
            s.metric,
            ms(s.p99_us)
        ),
        None => "no step held, not even the first".to_string(),
    };
    let broke = match (&c.broke, c.limit) {
        (Some(b), Limit::Generator) => format!(
            "; at {:.2}× chatload itself could not keep up ({}): run it on more or larger machines to find the target's limit",
            b.multiplier,
            b.why.as_deref().unwrap_or("late sends")
        ),
        (Some(b), _) => format!(
            "; broke at {:.2}× ({} offered): {}",
            b.multiplier,
            rate(b.offered_per_s),
            b.why.as_deref().unwrap_or("failed")
        ),
        (None, Limit::Interrupted) => "; interrupted".to_string(),
        (None, _) => "; every step up to the largest held (raise --to)".to_string(),
    };
    let once = c.breaks_not_repeated();
    let not_repeated = match once.first() {
        Some(first) => format!(
            "; {} broke once and held when measured again (first at {:.2}×: {})",
            if once.len() == 1 {
                "1 load".to_string()
            } else {
                format!("{} loads", once.len())
            },
            first.multiplier,
            first
                .why
                .as_deref()
                .unwrap_or("failed")
                .trim_end_matches("; measured again")
        ),
        None => String::new(),
    };
    format!("{held}{broke}{not_repeated}")
}

pub fn console(c: &Capacity) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "chatload capacity · {} · target {} · SLOs {}",
        c.scenario,
        c.target,
        if c.slos.is_empty() {
            "none (loss, errors, late sends)".to_string()
        } else {
            c.slos.join(", ")
        }
    );
    let _ = writeln!(
        o,
        "  {:>7}  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>6}  {:>6}  {:>5}  verdict",
        "load", "offered", "messages", "deliveries", "p50", "p99", "lost", "late", "cpu"
    );
    for s in &c.steps {
        let _ = writeln!(
            o,
            "  {:>6.2}×  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>6}  {:>6}  {:>5}  {}",
            s.multiplier,
            if s.offered_per_s > 0.0 {
                rate(s.offered_per_s)
            } else {
                format!("{} users", s.users)
            },
            rate(s.messages_per_s),
            rate(s.deliveries_per_s),
            ms(s.p50_us),
            ms(s.p99_us),
            s.lost,
            s.late_sends,
            cores(s),
            if s.held {
                "held".to_string()
            } else {
                format!("broke: {}", s.why.as_deref().unwrap_or(""))
            }
        );
    }
    let _ = writeln!(o, "  {}", verdict(c));
    o
}

pub fn markdown(c: &Capacity) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "### chatload capacity · {}\n", c.scenario);
    let _ = writeln!(o, "**{}**\n", verdict(c));
    let _ = writeln!(
        o,
        "| load | offered msg/s | messages/s | deliveries/s | p50 | p90 | p99 | lost | errors | late | chatload CPU (cores) | verdict |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for s in &c.steps {
        let _ = writeln!(
            o,
            "| {:.2}× | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.multiplier,
            s.offered_per_s,
            s.messages_per_s,
            s.deliveries_per_s,
            ms(s.p50_us),
            ms(s.p90_us),
            ms(s.p99_us),
            s.lost,
            s.errors,
            s.late_sends,
            cores(s),
            if s.held {
                "held".to_string()
            } else {
                s.why.clone().unwrap_or_default()
            }
        );
    }
    o
}

/// chatload's own CPU over a step, in cores; `-` where the bundle does not say.
fn cores(s: &Step) -> String {
    s.generator_cores
        .map_or_else(|| "-".to_string(), |c| format!("{c:.2}"))
}

/// A closed model offers no planned rate: its load is its users.
fn closed(c: &Capacity) -> bool {
    c.steps.iter().all(|s| s.offered_per_s <= 0.0)
}

/// The x of a step: offered messages/s, or users for a closed model.
fn load_of(closed: bool) -> impl Fn(&Step) -> f64 {
    move |s: &Step| {
        if closed {
            s.users as f64
        } else {
            s.offered_per_s
        }
    }
}

fn series(
    steps: &[Step],
    x: &dyn Fn(&Step) -> f64,
    label: &str,
    i: usize,
    f: impl Fn(&Step) -> f64,
) -> Line {
    Line {
        label: label.to_string(),
        color: PALETTE[i % PALETTE.len()],
        points: steps.iter().map(|s| (x(s), f(s))).collect(),
    }
}

pub fn html(c: &Capacity) -> String {
    let esc = crate::report::escape::xml;
    let is_closed = closed(c);
    let at = load_of(is_closed);
    let x = || Axis {
        label: if is_closed {
            "virtual users (closed model)".into()
        } else {
            "offered messages/s".into()
        },
        log: false,
        format: |v| format!("{v:.0}"),
        ticks: None,
    };
    let metric = c.steps.first().map_or("delivery", |s| s.metric.as_str());
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = line_chart(
        "hockey-stick",
        &format!("{metric} latency against load"),
        &x(),
        &Axis {
            label: "ms".into(),
            log: true,
            format: |v| format!("{v}"),
            ticks: None,
        },
        &[
            series(&c.steps, &at, "p50", 0, |s| ms(s.p50_us)),
            series(&c.steps, &at, "p90", 1, |s| ms(s.p90_us)),
            series(&c.steps, &at, "p99", 2, |s| ms(s.p99_us)),
            series(&c.steps, &at, "max", 3, |s| ms(s.max_us)),
        ],
    );
    let throughput = line_chart(
        "throughput",
        "throughput against load",
        &x(),
        &Axis {
            label: "per second".into(),
            log: false,
            format: |v| format!("{v:.0}"),
            ticks: None,
        },
        &[
            series(&c.steps, &at, "offered", 4, |s| {
                if is_closed { f64::NAN } else { s.offered_per_s }
            }),
            series(&c.steps, &at, "messages", 0, |s| s.messages_per_s),
            series(&c.steps, &at, "deliveries", 1, |s| s.deliveries_per_s),
        ],
    );
    let mut rows = String::new();
    for s in &c.steps {
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{:.2}×</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if s.held { "held" } else { "broke" },
            s.multiplier,
            s.offered_per_s,
            s.messages_per_s,
            s.deliveries_per_s,
            ms(s.p50_us),
            ms(s.p99_us),
            s.lost,
            s.errors,
            s.late_sends,
            cores(s),
            esc(&if s.held {
                "held".to_string()
            } else {
                s.why.clone().unwrap_or_default()
            })
        );
    }
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>chatload capacity · {name}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:820px;color:#111}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:4px 6px;text-align:right}}
td:last-child,th:last-child{{text-align:left}}tr.broke td{{color:#b91c1c}}.verdict{{font-size:16px;padding:10px;background:#f3f4f6}}
svg text{{font-size:12px;fill:#333}}svg .ct{{font-weight:600;font-size:14px}}svg .grid{{stroke:#e5e7eb}}</style></head>
<body><h1>Capacity · {name}</h1><p class="verdict">{verdict}</p><p>Target {target}; SLOs: {slos}.</p>
{latency}{throughput}
<table><tr><th>load</th><th>offered/s</th><th>messages/s</th><th>deliveries/s</th><th>p50 ms</th><th>p99 ms</th><th>lost</th><th>errors</th><th>late</th><th>chatload CPU (cores)</th><th>verdict</th></tr>{rows}</table>
<p>Each step is an ordinary run; its bundle (report.html, summary.json, latency.hlog) is in the step's folder beside this page.</p></body></html>
"#,
        name = esc(&c.scenario),
        verdict = esc(&verdict(c)),
        target = esc(&c.target),
        slos = esc(&if c.slos.is_empty() {
            "none besides loss, errors and late sends".to_string()
        } else {
            c.slos.join(", ")
        }),
    )
}

/// Writes `capacity.json`, `capacity.md` and `capacity.html` into `dir`.
pub fn write(dir: &Path, c: &Capacity) -> Result<(), CapacityError> {
    let put = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| CapacityError::Write {
                path: path.display().to_string(),
                detail: e.to_string(),
            })
    };
    let json = serde_json::to_string_pretty(c).map_err(|e| CapacityError::Write {
        path: "capacity.json".into(),
        detail: e.to_string(),
    })?;
    put("capacity.json", json)?;
    put("capacity.md", markdown(c))?;
    put("capacity.html", html(c))
}

/// Reads a capacity bundle's `capacity.json` (the folder or the file).
pub fn read(path: &Path) -> Result<Capacity, String> {
    let file = if path.is_dir() {
        path.join("capacity.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a chatload capacity result ({e}); give the folder `chatload capacity` wrote",
            file.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::{Limit, Step};

    #[test]
    fn a_result_read_back_holds_the_very_rates_written() {
        // Seen in a capacity search: serde_json without `float_roundtrip` read this back as
        // 230.33333333333334.
        let rate: f64 = "230.33333333333337".parse().unwrap();
        let step = Step {
            multiplier: 2.0_f64.sqrt(),
            offered_per_s: rate,
            messages_per_s: rate,
            deliveries_per_s: 1.0 / 3.0,
            users: 200,
            metric: "delivery".into(),
            p50_us: 1,
            p90_us: 2,
            p99_us: 3,
            max_us: 4,
            lost: 0,
            errors: 0,
            late_sends: 0,
            messages: 691,
            generator_cores: Some(0.37),
            held: true,
            why: None,
            bundle: "step-01".into(),
        };
        let c = Capacity {
            schema_version: 1,
            scenario: "s".into(),
            target: "ws://127.0.0.1:1/v1/ws".into(),
            slos: vec![],
            steps: vec![step.clone()],
            sustainable: Some(step),
            broke: None,
            limit: Limit::Target,
        };
        let dir = std::env::temp_dir().join(format!("chatload-capacity-rt-{}", std::process::id()));
        write(&dir, &c).unwrap();
        let back = read(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back, c);
        assert_eq!(back.steps[0].offered_per_s.to_bits(), rate.to_bits());
        // The generator's CPU is in every form a person reads.
        for shown in [console(&c), markdown(&c), html(&c)] {
            assert!(shown.contains("0.37"), "{shown}");
        }
    }
}

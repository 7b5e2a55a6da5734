//! The report bundle of a real run: `latency.hlog` reads back to the same counts and
//! percentiles as `summary.json`, `report.html` carries every chart with its data and fetches
//! nothing, `junit.xml` lists the thresholds, `chatload report` renders the same page again,
//! and `chatload compare` gates on a regression.

mod common;

use common::*;
use std::process::Command;

fn chatload() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_is_complete_and_consistent() {
    let text = chat_scenario(
        120,
        4,
        12,
        "[thresholds]\n\"delivery.p99\" = \"< 1s\"\n\"loss\" = \"== 0\"\n",
    );
    // Keep the folder: run here rather than through `run_text`, whose folder goes away.
    let file = scenario_file(&text);
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let opts = chatload::engine::RunOptions {
        out: Some(file.dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let r = chatload::engine::run(scenario, &opts).await.expect("run");
    let dir = &r.bundle_dir;
    let s = &r.summary;

    // The interval log holds the same samples as the summary.
    let log = std::fs::read(dir.join("latency.hlog")).expect("latency.hlog");
    let intervals = chatload::metrics::hlog::read(&log).expect("readable interval log");
    let totals = chatload::metrics::hlog::totals(&intervals);
    assert!(!s.metrics.is_empty());
    for (name, m) in &s.metrics {
        let h = totals
            .get(name)
            .unwrap_or_else(|| panic!("{name} in the log"));
        assert_eq!(h.len(), m.count, "{name} count");
        assert_eq!(h.value_at_quantile(0.99), m.p99_us, "{name} p99");
        assert_eq!(h.max(), m.max_us, "{name} max");
    }
    hdrhistogram_py_reads_the_same(dir, s);
    let seconds: std::collections::BTreeSet<u64> =
        intervals.iter().map(|i| i.start_s.round() as u64).collect();
    assert!(seconds.len() >= 4, "one interval per second: {seconds:?}");

    // The page: every chart with its data, nothing from outside.
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    for chart in [
        "throughput",
        "latency-delivery",
        "latency-send",
        "spectrum",
        "trouble",
    ] {
        assert!(
            html.contains(&format!("data-chart=\"{chart}\"")),
            "chart {chart} present"
        );
    }
    let n = s.series.points.len();
    assert!(html.contains(&format!("data-series=\"sent\" data-n=\"{n}\"")));
    assert!(html.contains(&format!("data-series=\"delivered\" data-n=\"{n}\"")));
    assert!(html.contains("data-series=\"p99\""));
    assert!(
        html.contains("data-series=\"delivery\" data-n=\"51\""),
        "the spectrum"
    );
    for forbidden in ["<script", "src=", "href=", "@import", "url(", "https://"] {
        assert!(
            !html.contains(forbidden),
            "report.html must fetch nothing: {forbidden}"
        );
    }
    let outside = html.matches("http://").count();
    let namespaces = html.matches("http://www.w3.org/2000/svg").count();
    assert_eq!(outside, namespaces, "only SVG namespaces, no URLs");
    assert!(html.contains("delivery.p99 &lt; 1s"), "thresholds first");
    assert!(html.find("id=\"thresholds\"") < html.find("id=\"throughput\""));

    // JUnit: one case per rule.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    assert_eq!(junit.matches("<testcase").count(), s.thresholds.len());

    // `chatload report` renders the same page again from the bundle.
    let before = html.clone();
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let out = chatload().arg("report").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(again, before);

    // `chatload compare`: the run against itself is no regression; a copy whose delivery
    // p99 doubled is one (exit 1), and the Markdown says which.
    let same = chatload()
        .arg("compare")
        .arg(dir)
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    let worse_dir = dir.parent().unwrap().join("worse");
    std::fs::create_dir_all(&worse_dir).unwrap();
    let mut worse = s.clone();
    if let Some(d) = worse.metrics.get_mut("delivery") {
        d.p99_us = d.p99_us * 2 + 1000;
    }
    std::fs::write(
        worse_dir.join("summary.json"),
        serde_json::to_string(&worse).unwrap(),
    )
    .unwrap();
    let out = chatload()
        .arg("compare")
        .arg(dir)
        .arg(&worse_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("`delivery.p99`") && md.contains("❌ regressed"),
        "{md}"
    );
    let bad = chatload()
        .args(["compare", "--max-regression", "ten"])
        .arg(dir)
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    // Runs that differ for reasons other than the target do not make a regression gate: a
    // candidate that ended early, or one with another seed, is refused (exit 2) unless
    // --allow-different.
    let unlike = |name: &str, edit: &dyn Fn(&mut chatload::report::Summary)| {
        let d = dir.parent().unwrap().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let mut copy = s.clone();
        edit(&mut copy);
        std::fs::write(
            d.join("summary.json"),
            serde_json::to_string(&copy).unwrap(),
        )
        .unwrap();
        d
    };
    for (d, says) in [
        (
            unlike("interrupted", &|c| c.ended = "interrupted".into()),
            "ended early (interrupted), so its figures cover part of its load",
        ),
        (
            unlike("reseeded", &|c| c.seed += 1),
            "ran the scenario with different settings (seed",
        ),
        (
            unlike("longer", &|c| c.planned_duration_s *= 2.0),
            "different settings (duration",
        ),
    ] {
        let out = chatload().arg("compare").arg(dir).arg(&d).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(says) && err.contains("--allow-different"),
            "{err}"
        );
        let anyway = chatload()
            .arg("compare")
            .arg(dir)
            .arg(&d)
            .arg("--allow-different")
            .output()
            .unwrap();
        assert_eq!(anyway.status.code(), Some(0), "{err}");
    }
}

/// The HdrHistogram project's own Python reader finds the same counts, p99 and max per
/// metric as summary.json. CI installs it (`.ci/run`); elsewhere the check is skipped when
/// the package is missing, and says so.
fn hdrhistogram_py_reads_the_same(dir: &std::path::Path, s: &chatload::report::Summary) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hlog_check.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(dir.join("latency.hlog"))
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).to_string(),
                Err(e) => e.to_string(),
            };
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must check the log with HdrHistogram_py (pip install hdrhistogram): {why}"
            );
            eprintln!("skipped: HdrHistogram_py is not installed here ({why})");
            return;
        }
    };
    let read: std::collections::BTreeMap<String, [u64; 3]> =
        serde_json::from_slice(&out.stdout).expect("the checker prints JSON");
    assert_eq!(
        read.len(),
        s.metrics.len(),
        "every metric is a tag: {read:?}"
    );
    for (name, m) in &s.metrics {
        assert_eq!(
            read.get(name),
            Some(&[m.count, m.p99_us, m.max_us]),
            "{name}: HdrHistogram_py's count, p99 and max"
        );
    }
}

//! A run split across machines: four `chatload run --segment i/4` processes against one
//! `chatload serve`, started together with --start-at, then `chatload merge`. Together they
//! send what the scenario run whole sends (within sampling error), nothing is lost, and the
//! merged histograms are exactly the segments' samples together.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = r#"[scenario]
name = "split"
seed = 21
loss_deadline = "2s"
drain = "3s"

[population.consumers]
users = 400
contacts = { uniform = { min = 2, max = 8 } }
groups = 40
group_size = { uniform = { min = 3, max = 8 } }

[[pattern]]
kind = "direct_chat"
conversations = "12/min per user"
messages = { geometric = { mean = 4 } }
gap = { exponential = { mean = "300ms" } }

[[pattern]]
kind = "group_chat"
rate = "20/min per group"

[load]
stages = [{ ramp = "2s" }, { hold = "6s" }]

[thresholds]
"loss" = "== 0"
"delivery.p99" = "< 2s"
"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chatload")
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chatload serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child, format!("ws://127.0.0.1:{port}/v1/ws"))
}

fn summary(dir: &std::path::Path) -> chatload::report::Summary {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// The two split-against-whole comparisons take turns: each starts a server and several
/// chatload processes, and an exact comparison wants every process on its schedule. The
/// one mismatch seen with both at once (988 messages against 989) was a throttled business
/// tier, fixed in `BUSINESS`; with it fixed they passed six times of six side by side, and
/// they still take turns as CPU isolation for a measurement, not for goose.
static ONE_COMPARISON: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn four_segments_send_what_one_run_sends_and_merge_exactly() {
    let _turn = ONE_COMPARISON.lock().unwrap_or_else(|p| p.into_inner());
    let file = common::scenario_file(SCENARIO);
    let root = common::bundle_dir();
    let server = serve();
    let dirs = run_segments(&file.path, &server, &root, 4);
    drop(server);
    let parts: Vec<_> = dirs.iter().map(|d| summary(d)).collect();
    for (i, s) in parts.iter().enumerate() {
        let seg = s.segment.as_ref().expect("a segment's summary says so");
        assert_eq!((seg.index, seg.count), (i as u32, 4));
        assert_eq!(s.users, 100, "users are dealt out in turn");
        assert!(
            seg.start_offset_ms.is_some_and(|o| o.abs() < 2_000.0),
            "{seg:?}"
        );
        assert_eq!(s.accounting.lost, 0);
        assert!(s.accounting.balances());
    }

    // Merge: exit 0, sums, and histograms equal to the segments' logs added up here.
    let merged = root.join("merged");
    let m = merge(&dirs, &merged);
    let sum = |f: fn(&chatload::report::Summary) -> u64| parts.iter().map(f).sum::<u64>();
    assert_eq!(
        m.accounting.messages_sent,
        sum(|s| s.accounting.messages_sent)
    );
    assert_eq!(m.accounting.delivered, sum(|s| s.accounting.delivered));
    assert_eq!(m.accounting.sent, sum(|s| s.accounting.sent));
    assert_eq!(
        m.accounting.messages_scheduled,
        sum(|s| s.accounting.messages_scheduled),
        "merge sums the schedule's count"
    );
    assert_eq!(
        (
            m.accounting.lost,
            m.accounting.delivered_late,
            m.accounting.unverified
        ),
        (
            sum(|s| s.accounting.lost),
            sum(|s| s.accounting.delivered_late),
            sum(|s| s.accounting.unverified)
        )
    );
    assert!(
        m.accounting.balances() && m.accounting.schedule_balances(),
        "{:?}",
        m.accounting
    );
    assert_eq!(m.users, 400);
    assert_eq!(m.merged_from.len(), 4);
    let mut all = chatload::metrics::new_histogram();
    for d in &dirs {
        let log = std::fs::read(d.join("latency.hlog")).unwrap();
        let t = chatload::metrics::hlog::totals(&chatload::metrics::hlog::read(&log).unwrap());
        all.add(&t["delivery"]).unwrap();
    }
    let d = &m.metrics["delivery"];
    assert_eq!(d.count, all.len());
    assert_eq!(d.count, sum(|s| s.metrics["delivery"].count));
    assert_eq!(d.p99_us, all.value_at_quantile(0.99));
    assert_eq!(d.max_us, all.max());
    // Per pattern too: each pattern's histograms are in the logs, merged exactly.
    for (i, pattern) in m.patterns.iter().enumerate() {
        let tag = chatload::metrics::hlog::pattern_tag(i, "delivery");
        let mut want = chatload::metrics::new_histogram();
        for d in &dirs {
            let log = std::fs::read(d.join("latency.hlog")).unwrap();
            let t = chatload::metrics::hlog::totals(&chatload::metrics::hlog::read(&log).unwrap());
            want.add(&t[&tag]).unwrap();
        }
        let got = &pattern.metrics["delivery"];
        assert_eq!(got.count, want.len(), "{}", pattern.name);
        assert_eq!(
            got.count,
            parts
                .iter()
                .map(|s| s.patterns[i].metrics["delivery"].count)
                .sum::<u64>()
        );
        assert_eq!(got.p99_us, want.value_at_quantile(0.99), "{}", pattern.name);
    }
    assert!(m.thresholds.iter().all(|v| v.passed), "{:?}", m.thresholds);
    assert_eq!(
        m.thresholds.len(),
        2,
        "the scenario's rules judged on the merge"
    );
    let log = std::fs::read(merged.join("latency.hlog")).unwrap();
    let back = chatload::metrics::hlog::totals(&chatload::metrics::hlog::read(&log).unwrap());
    assert_eq!(back["delivery"].len(), all.len(), "the merged interval log");

    // The same scenario whole, against a fresh server: the same traffic within sampling
    // error (the split draws contacts inside each segment, so it is not the same graph).
    let w = run_whole(&file.path, &root.join("whole"));
    let (a, b) = (
        m.accounting.messages_sent as f64,
        w.accounting.messages_sent as f64,
    );
    assert!(
        (a - b).abs() <= 4.0 * b.sqrt() + 0.03 * b,
        "split {a} messages against whole {b}"
    );
    assert_eq!(w.accounting.lost, 0);

    // A set with a segment missing or given twice is refused, and nothing is written.
    for set in [
        &dirs[..3],
        &[
            dirs[0].clone(),
            dirs[0].clone(),
            dirs[1].clone(),
            dirs[2].clone(),
        ][..],
    ] {
        let out = root.join("refused");
        let o = Command::new(bin())
            .arg("merge")
            .args(set)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("missing") || err.contains("twice"), "{err}");
        assert!(!out.exists());
    }
}

const BUSINESS: &str = r#"[scenario]
name = "biz-split"
seed = 5
loss_deadline = "5s"
drain = "5s"

[population.consumers]
users = 300

# A tier well above the traffic: throttling is not this test's subject, and at 40/s (inbound
# replies and customer turns count against it too) a split run starved of CPU once had a
# campaign message refused after six 130429s in a row, so one consumer never replied and
# the split sent 988 messages against the whole run's 989 (the accounting said so: 1 refused).
[population.businesses]
count = 2
throughput = 400
messaging_limit = 1000

[[pattern]]
name = "campaign"
kind = "business_broadcast"
start = "1s"
recipients = 200
send_rate = "60/s"
read = 0.5
read_delay = { exponential = { mean = "500ms" } }
reply = 0.2
reply_delay = { exponential = { mean = "500ms" } }
on_throttle = "slow"

[[pattern]]
name = "support"
kind = "support_conversation"
conversations = "6/min per user"
turns = { geometric = { mean = 3 } }
customer_gap = { exponential = { mean = "500ms" } }
bot = 1.0
bot_think = { exponential = { mean = "100ms" } }

[load]
stages = [{ ramp = "1s" }, { hold = "7s" }]

[thresholds]
"loss" = "== 0"
"#;

/// Runs a chatload command to its end and insists on exit 0, showing its stderr otherwise.
fn succeed(command: &mut Command) {
    let o = command.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `chatload merge` of `dirs` into `out`, which must succeed; the merged summary.
fn merge(dirs: &[std::path::PathBuf], out: &std::path::Path) -> chatload::report::Summary {
    succeed(
        Command::new(bin())
            .arg("merge")
            .args(dirs)
            .arg("--out")
            .arg(out),
    );
    summary(out)
}

/// The scenario run whole, against a fresh server, into `out`.
fn run_whole(file: &std::path::Path, out: &std::path::Path) -> chatload::report::Summary {
    let server = serve();
    succeed(
        Command::new(bin())
            .arg("run")
            .arg(file)
            .args(["--target", &server.1, "--quiet"])
            .arg("--out")
            .arg(out),
    );
    summary(out)
}

fn run_segments(
    file: &std::path::Path,
    server: &Server,
    root: &std::path::Path,
    n: u32,
) -> Vec<std::path::PathBuf> {
    let start = chrono::Utc::now() + chrono::Duration::seconds(3);
    let start = start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let children: Vec<_> = (0..n)
        .map(|i| {
            let out = root.join(format!("seg-{i}"));
            let child = Command::new(bin())
                .arg("run")
                .arg(file)
                .args(["--target", &server.1, "--quiet", "--start-at", &start])
                .args(["--segment", &format!("{i}/{n}")])
                .arg("--out")
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    children
        .into_iter()
        .map(|(child, out)| {
            let o = child.wait_with_output().unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            out
        })
        .collect()
}

fn business(
    s: &chatload::report::Summary,
    name: &str,
) -> chatload::report::summary::BusinessSummary {
    s.patterns
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.business)
        .unwrap_or_else(|| panic!("business summary of {name}"))
}

#[test]
fn business_patterns_split_by_consumer_and_their_webhooks_reach_the_right_segment() {
    let _turn = ONE_COMPARISON.lock().unwrap_or_else(|p| p.into_inner());
    let file = common::scenario_file(BUSINESS);
    let root = common::bundle_dir();
    let server = serve();
    let dirs = run_segments(&file.path, &server, &root, 2);
    drop(server);
    let parts: Vec<_> = dirs.iter().map(|d| summary(d)).collect();
    for s in &parts {
        assert_eq!(s.accounting.lost, 0);
        assert_eq!(
            s.accounting.refused, 0,
            "nothing refused, so every reply is owed"
        );
        for name in ["campaign", "support"] {
            let b = business(s, name);
            assert!(
                b.requests > 20,
                "{name}: each segment sends its share: {b:?}"
            );
            // The server posted every status of this segment's messages here and nowhere
            // else: each accepted send has its `sent` and `delivered`, none is missing.
            assert_eq!(b.status_sent, b.accepted, "{name}: {b:?}");
            assert_eq!(b.status_delivered, b.accepted, "{name}: {b:?}");
            assert_eq!(b.missing_statuses, 0, "{name}: {b:?}");
        }
        // Consumers' replies to the campaign come back through this segment's webhook.
        assert!(business(s, "campaign").replies > 0);
        assert_eq!(
            s.accounting.unexpected, 0,
            "deliveries this segment never sent"
        );
    }
    let m = merge(&dirs, &root.join("merged"));

    // Whole, against a fresh server. With no contact graph to draw per segment, the split
    // walks exactly the whole run's schedule: the same campaign, the same conversations.
    let w = run_whole(&file.path, &root.join("whole"));
    assert_eq!(business(&m, "campaign").requests, 200);
    assert_eq!(business(&w, "campaign").requests, 200);
    assert_eq!(
        business(&m, "support").requests,
        business(&w, "support").requests
    );
    assert_eq!(m.accounting.messages_sent, w.accounting.messages_sent);
    let sum = |name| {
        parts
            .iter()
            .map(|s| business(s, name).status_delivered)
            .sum::<u64>()
    };
    assert_eq!(business(&m, "campaign").status_delivered, sum("campaign"));
    assert_eq!(business(&m, "support").status_delivered, sum("support"));
}

#[test]
fn splitting_a_mention_all_storm_is_refused_before_anything_is_sent() {
    let text = SCENARIO.replace(
        "rate = \"20/min per group\"",
        "rate = \"20/min per group\"\nmention_all = { at = \"3s\", members = 100, open = 0.5 }",
    );
    let file = common::scenario_file(&text);
    let o = Command::new(bin())
        .arg("run")
        .arg(&file.path)
        .args(["--segment", "0/2", "--quiet"])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("mention_all"));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/otp-login-storm.toml");
    for bad in ["2/2", "x", "1/0"] {
        let o = Command::new(bin())
            .arg("run")
            .arg(&path)
            .args(["--segment", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
}

const SMALL: &str = r#"[scenario]
name = "small-split"
seed = 4

[population.consumers]
users = 20
contacts = { uniform = { min = 2, max = 4 } }

[[pattern]]
kind = "direct_chat"
conversations = "20/min per user"
messages = 1

[load]
stages = [{ ramp = "500ms" }, { hold = "1s" }]
"#;

/// `chatload run FILE ARGS… --out DIR` to its end (exit 0 or 1: no rule is at stake here).
fn run_into(file: &std::path::Path, args: &[&str], out: &std::path::Path) {
    let o = Command::new(bin())
        .arg("run")
        .arg(file)
        .arg("--quiet")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `chatload ARGS…` must exit 2 and say `says`.
fn refused(args: &[&std::ffi::OsStr], says: &str) {
    let o = Command::new(bin()).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
}

/// merge refuses segments of different runs (scenario content, population, duration), a
/// segment without its interval log, a summary of an unknown schema, and an --out that is
/// one of its inputs; compare refuses runs of different scenarios unless told otherwise.
#[test]
fn merge_and_compare_refuse_what_does_not_belong_together() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let file = r.join("small.toml");
    std::fs::write(&file, SMALL).unwrap();
    let edited = r.join("small-edited.toml");
    std::fs::write(&edited, format!("{SMALL}# one more line\n")).unwrap();
    let other = r.join("other.toml");
    std::fs::write(&other, SMALL.replace("small-split", "other-scenario")).unwrap();
    let d = |n: &str| r.join(n);
    run_into(&file, &["--segment", "0/2"], &d("a0"));
    run_into(&file, &["--segment", "1/2"], &d("a1"));
    run_into(&file, &["--segment", "1/2", "--users", "30"], &d("users"));
    run_into(
        &file,
        &["--segment", "1/2", "--duration", "2s"],
        &d("duration"),
    );
    run_into(&edited, &["--segment", "1/2"], &d("edited"));
    run_into(&other, &[], &d("other"));
    // The pair that belongs together merges.
    succeed(
        Command::new(bin())
            .arg("merge")
            .args([d("a0"), d("a1")])
            .arg("--out")
            .arg(d("merged")),
    );
    // Copies of a1 with one thing wrong.
    let copy = |name: &str| {
        std::fs::create_dir(d(name)).unwrap();
        for f in ["summary.json", "latency.hlog"] {
            std::fs::copy(d("a1").join(f), d(name).join(f)).unwrap();
        }
        d(name)
    };
    std::fs::remove_file(copy("no-log").join("latency.hlog")).unwrap();
    let future = copy("future");
    let text = std::fs::read_to_string(future.join("summary.json")).unwrap();
    let text = text.replacen(
        &format!(
            "\"schema_version\": {}",
            chatload::report::summary::SCHEMA_VERSION
        ),
        "\"schema_version\": 999",
        1,
    );
    assert!(text.contains("999"));
    std::fs::write(future.join("summary.json"), text).unwrap();

    let merge_with = |second: &str, out: &std::path::Path| {
        vec![
            std::ffi::OsString::from("merge"),
            d("a0").into_os_string(),
            d(second).into_os_string(),
            "--out".into(),
            out.as_os_str().to_owned(),
        ]
    };
    let fresh = d("never");
    for (second, says) in [
        ("users", "populations of 20 and 30 people"),
        ("duration", "durations of"),
        ("edited", "different content"),
        ("no-log", "latency.hlog"),
        ("future", "schema_version 999"),
    ] {
        let args = merge_with(second, &fresh);
        refused(
            &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
            says,
        );
        assert!(!fresh.exists(), "nothing written for {second}");
    }
    let before = std::fs::read(d("a0").join("summary.json")).unwrap();
    let args = merge_with("a1", &d("a0"));
    refused(
        &args.iter().map(|a| a.as_os_str()).collect::<Vec<_>>(),
        "is one of the segments",
    );
    assert_eq!(std::fs::read(d("a0").join("summary.json")).unwrap(), before);

    // compare: a run of another scenario is refused, unless --allow-different.
    let (m, o) = (d("merged").into_os_string(), d("other").into_os_string());
    refused(
        &[std::ffi::OsStr::new("compare"), &m, &o],
        "different scenarios",
    );
    let allowed = Command::new(bin())
        .args([std::ffi::OsStr::new("compare"), &m, &o])
        .arg("--allow-different")
        .output()
        .unwrap();
    assert!(
        matches!(allowed.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    refused(
        &[
            std::ffi::OsStr::new("compare"),
            d("a0").as_os_str(),
            d("future").as_os_str(),
        ],
        "schema_version 999",
    );
}

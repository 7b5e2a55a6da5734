//! Finding the knee against servers with a known one, each in a process of its own pinned to
//! core 1 (chatload, a debug build here, may use both cores: pinned to one it fell behind its
//! schedule in CI): `chatload serve --max-rate N` (it takes at most N
//! messages a second; past it they queue) and mosquitto on a slice of a core. The highest
//! rate that meets the SLO must lie within 10% of the limit measured independently by the
//! server's own delivery counter, and between 25% below and 15% above floods of MQTT
//! clients written without chatload (see that test for why). The
//! bundle shows the hockey stick; `plan --capacity` turns the result into a number of servers.

mod common;

use chatload::capacity::{self, CapacityOptions, Limit};
use chatload::engine::RunOptions;
use chatload::scenario::units::Micros;

/// Half of what a debug build of chatload sends comfortably beside the server on two cores:
/// at 1,000/s a fresh CI run's client fell 1.2% behind its schedule at 1.68× and the search
/// (rightly) named the generator as the limit.
const MAX_RATE: f64 = 500.0;

/// The searches measure rates: one at a time, so that neither steals the other's CPU.
static ONE_MEASUREMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scenario of the `serve --max-rate` search (its target comes from the command line).
const KNEE_SCENARIO: &str = r#"[scenario]
name = "knee"
seed = 3
loss_deadline = "5s"
drain = "2s"

[population.consumers]
users = 200
contacts = { uniform = { min = 3, max = 8 } }

[[pattern]]
kind = "direct_chat"
conversations = "75/min per user"    # 250 messages/s at 1x
messages = 1
size = 32
read = 0.0
typing = 0.0

[load]
stages = [{ ramp = "1s" }, { hold = "4s" }]

[thresholds]
"delivery.p99" = "< 100ms"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knee_is_found_within_ten_percent_of_the_servers_rate() {
    let _one = ONE_MEASUREMENT.lock().await;
    if !two_cores() {
        return;
    }
    let max_rate = format!("{MAX_RATE}");
    let server = common::serve::ServeProcess::start_pinned(&["--max-rate", &max_rate], 1);
    let file = common::scenario_file(KNEE_SCENARIO);
    let base = chatload::scenario::load(&file.path).unwrap();
    let out = common::bundle_dir();
    let opts = CapacityOptions {
        slos: base.thresholds.clone(),
        from: 1.0,
        to: 8.0,
        factor: 2.0,
        refine: 3,
        step_time: Micros(5_000_000),
        run: RunOptions {
            quiet: true,
            target: Some(server.ws_url()),
            ..RunOptions::default()
        },
        out: out.clone(),
    };
    let mut heard = 0;
    let c = capacity::search(&base, &opts, |_| heard += 1)
        .await
        .expect("search");
    capacity::report::write(&out, &c).unwrap();
    assert_eq!(heard, c.steps.len());
    assert_eq!(c.limit, Limit::Target, "{}", capacity::report::console(&c));
    let s = c.sustainable.as_ref().expect("a step held");
    let b = c.broke.as_ref().expect("a step broke");
    assert!(
        (s.messages_per_s - MAX_RATE).abs() <= MAX_RATE * 0.10,
        "sustainable {:.0}/s against a server that takes {MAX_RATE}/s\n{}",
        s.messages_per_s,
        capacity::report::console(&c)
    );
    assert!(s.held && s.p99_us < 100_000 && s.lost == 0);
    assert!(s.late_sends as f64 <= s.messages as f64 * capacity::LATE_SHARE);
    assert!(!b.held && b.multiplier > s.multiplier);
    assert!(
        b.why.as_deref().unwrap_or("").contains("delivery.p99"),
        "{:?}",
        b.why
    );
    // Steps below the knee deliver what they are offered; past it deliveries stop growing.
    let first = &c.steps[0];
    assert!((first.messages_per_s - first.offered_per_s).abs() < first.offered_per_s * 0.1);
    let last = c.steps.last().unwrap();
    assert!(last.deliveries_per_s <= MAX_RATE * 1.05, "{last:?}");
    // The bundle: every step's own run, the result, and the charts with their data.
    for step in &c.steps {
        assert!(
            std::path::Path::new(&step.bundle)
                .join("summary.json")
                .is_file()
        );
    }
    let back = capacity::report::read(&out).unwrap();
    assert_eq!(back, c);
    let html = std::fs::read_to_string(out.join("capacity.html")).unwrap();
    for chart in ["hockey-stick", "throughput"] {
        assert!(
            html.contains(&format!("data-chart=\"{chart}\"")),
            "{chart} missing"
        );
    }
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "nothing fetched"
    );
    assert!(
        std::fs::read_to_string(out.join("capacity.md"))
            .unwrap()
            .contains("sustainable")
    );

    // The limit measured on its own: the same server offered half as much again as it can
    // take (750/s), no SLO, while this test reads the server's own count of deliveries
    // written to connections (`GET /metrics`) over three seconds of the held load (after
    // the ramp and the first second of filling the queue). The knee must lie within 10% of
    // that figure.
    let mut flood = capacity::scaled(&base, 3.0);
    flood.thresholds.clear();
    let flood_opts = RunOptions {
        quiet: true,
        target: Some(server.ws_url()),
        out: Some(common::bundle_dir()),
        ..RunOptions::default()
    };
    let metrics = format!("http://127.0.0.1:{}/metrics", server.port);
    let run = tokio::spawn(async move { chatload::engine::run(flood, &flood_opts).await });
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (from, start) = (server_delivered(&metrics).await, std::time::Instant::now());
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let saturated =
        (server_delivered(&metrics).await - from) as f64 / start.elapsed().as_secs_f64();
    run.await.unwrap().expect("flood run");
    eprintln!(
        "serve --max-rate {MAX_RATE}: wrote {saturated:.0} deliveries/s flooded; knee {:.0} messages/s\n{}",
        s.messages_per_s,
        capacity::report::console(&c)
    );
    assert!(
        (saturated - MAX_RATE).abs() <= MAX_RATE * 0.05,
        "flooded, the server delivered {saturated:.0}/s by its own count"
    );
    assert!(
        (s.messages_per_s - saturated).abs() <= saturated * 0.10,
        "knee {:.0}/s against a measured limit of {saturated:.0}/s",
        s.messages_per_s
    );

    // Planning with it: 10x the population at the same per-user rates needs 10x the load.
    let bin = env!("CARGO_BIN_EXE_chatload");
    let plan = std::process::Command::new(bin)
        .arg("plan")
        .arg(&file.path)
        .args(["--users", "2000", "--headroom", "25%", "--capacity"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let text = String::from_utf8_lossy(&plan.stdout);
    // Peak 2,500 messages/s × 1.25 over what one server held.
    let expect = (2500.0 * 1.25 / s.messages_per_s).ceil() as u64;
    assert!(
        text.contains(&format!("servers     {expect} for the peak")),
        "expected {expect} servers:\n{text}"
    );
}

/// `chatload_server_deliveries_written_total` from the reference server's `/metrics`.
async fn server_delivered(url: &str) -> u64 {
    let text = reqwest::get(url)
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("chatload_server_deliveries_written_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no written-deliveries counter in {text}"))
}

/// Whether the client and the server can have a core each; in CI they must.
fn two_cores() -> bool {
    if num_cpus() >= 2 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the capacity tests pin the server and chatload to a core each: they need two"
    );
    eprintln!("skipping: one CPU core; the server and chatload need one each");
    false
}

#[test]
fn capacity_refuses_bad_flags_before_sending() {
    let file = common::scenario_file(KNEE_SCENARIO);
    let bin = env!("CARGO_BIN_EXE_chatload");
    for args in [
        vec!["--from", "2", "--to", "1"],
        vec!["--factor", "1"],
        vec!["--slo", "delivery.p99 about 5ms"],
        vec!["--step-time", "1s"],
    ] {
        let out = std::process::Command::new(bin)
            .arg("capacity")
            .arg(&file.path)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}

/// mosquitto on 2% of a core (1 ms of every 50 ms, on core 1): bare, it carries tens of
/// thousands of messages a second on a whole core, more than one core of chatload (a debug
/// build here) can offer, so the knee would be chatload's and the test would prove nothing
/// about finding a target's. How much a slice carries depends on the machine's cores: on 3%
/// one machine here saturated near 1,000 deliveries/s and a later one near 3,700, past the
/// search's old top step (32×, 3,200/s); on 2% that later one carried 2,370–2,560.
const BROKER_CPU_PERCENT: u64 = 2;

fn mosquitto_knee_scenario(url: &str) -> String {
    format!(
        r#"[scenario]
name = "mosquitto-knee"
seed = 5
loss_deadline = "5s"
drain = "2s"

[population.consumers]
users = 200
contacts = {{ uniform = {{ min = 3, max = 8 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "30/min per user"   # 100 messages/s at 1x
messages = 1
size = 64
read = 0.0
typing = 0.0

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "4s" }}]

[target]
url = "{url}"

[target.mqtt]
version = "3.1.1"
qos = 1
user_topic = "chat/u/{{{{user}}}}"
group_topic = "chat/g/{{{{group}}}}"
client_id = "chatload-{{{{user}}}}"
clean_session = true
"#
    )
}

/// The machine's online cores.
fn num_cpus() -> usize {
    // SAFETY: sysconf reads a system constant.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    n.max(1) as usize
}

/// A real broker with a known limit: mosquitto pinned to core 1 on `BROKER_CPU_PERCENT` of it, its limit
/// measured by a flood of hand-encoded MQTT clients shaped like chatload's users (no chatload
/// code: `common::mqtt_flood`) before and after the capacity search, which runs with chatload
/// free to use both cores (the broker's quota, not its core, sets its limit). The knee must lie
/// no more than 40% below the lower and 15% above the higher of what the two floods measured
/// (they differ by up to a sixth on this shared machine: both bound it). The flood has 50
/// clients: with 200 it overloaded the broker, which then carried less than chatload's paced
/// traffic (knees of 2,296–2,502 deliveries/s against floods of 1,650–2,136, every delivery
/// received); with 50 it measured 2,429–2,788 beside knees of 2,296 and 2,401. Below by up to
/// 40%: the bisection's last steps are 4.4% apart and the SLO breaks before saturation, and
/// how far before depends on the machine's cost per system call, which the flood (always
/// saturating, so batching) feels less than paced traffic does. On an afternoon this machine's
/// kernel was about 1.5× slower (README, Performance) the knee fell to 0.68–0.72 of the lower
/// flood (1,514 against 2,181, 1,677 against 2,437, 1,685 against 2,455), the build before
/// that day's changes as much as after; 0.82–0.95 on other days.
///
/// The SLO, p99 < 500 ms, sits far above the broker's service time, so the knee is where a
/// queue starts to build: the broker's limit. A tight SLO finds an earlier knee, as it
/// should (a CPU-bound broker's queueing delay under bursty arrivals crosses a tight bound
/// before it is saturated).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knee_against_mosquitto_on_one_core_is_near_its_measured_limit() {
    let _one = ONE_MEASUREMENT.lock().await;
    if !two_cores() {
        return;
    }
    let Some(slice) = common::cpu_slice::CpuSlice::new(BROKER_CPU_PERCENT) else {
        return;
    };
    let Some(broker) = common::mosquitto::Broker::start_pinned(
        common::mosquitto::Options {
            extra: String::new(),
        },
        1,
    ) else {
        return;
    };
    slice.add(broker.pid());
    let before = flood(broker.port).await;
    assert!(
        (200.0..5000.0).contains(&before),
        "mosquitto on {BROKER_CPU_PERCENT}% of a core carried {before:.0} deliveries/s"
    );

    let file = common::scenario_file(&mosquitto_knee_scenario(&broker.url()));
    let base = chatload::scenario::load(&file.path).unwrap();
    let out = common::bundle_dir();
    let opts = CapacityOptions {
        slos: vec![chatload::scenario::threshold::parse("delivery.p99", "< 500ms", &[]).unwrap()],
        from: 2.0,
        to: 64.0,
        factor: 2.0,
        refine: 4,
        step_time: Micros(5_000_000),
        run: RunOptions {
            quiet: true,
            ..RunOptions::default()
        },
        out: out.clone(),
    };
    let c = capacity::search(&base, &opts, |_| {})
        .await
        .expect("search");
    assert_eq!(
        c.target,
        broker.url(),
        "the scenario's target, not the embedded server"
    );
    let after = flood(broker.port).await;
    let table = capacity::report::console(&c);
    let (low, high) = (before.min(after), before.max(after));
    eprintln!(
        "mosquitto flooded: {before:.0} deliveries/s before the search, {after:.0} after\n{table}"
    );
    assert_eq!(c.limit, Limit::Target, "{table}");
    let s = c.sustainable.as_ref().expect("a step held");
    assert!(s.lost == 0, "{table}");
    assert!(
        s.late_sends as f64 <= s.messages as f64 * capacity::LATE_SHARE,
        "{table}"
    );
    assert!(
        s.deliveries_per_s >= low * 0.6 && s.deliveries_per_s <= high * 1.15,
        "knee {:.0} deliveries/s against mosquitto's measured {before:.0}/s and {after:.0}/s\n{table}",
        s.deliveries_per_s
    );
    // Past the knee the broker carries no more than it did flooded.
    let b = c.broke.as_ref().expect("a step broke");
    assert!(b.deliveries_per_s <= high * 1.15, "{table}");
}

/// The broker's saturated throughput, by the flood of MQTT clients written in the test.
async fn flood(port: u16) -> f64 {
    common::mqtt_flood::deliveries_per_second(
        port,
        &common::mqtt_flood::Flood {
            clients: 50,
            window: 1,
            payload: 200,
            topic_prefix: "chat/u/flood-",
            warm_up: std::time::Duration::from_secs(1),
            measure: std::time::Duration::from_secs(4),
        },
    )
    .await
}

//! Finding the knee against a server with a known one: the embedded reference server takes
//! at most `max_rate` messages a second (past it they queue), so the highest rate that meets
//! the SLO must lie within 10% of it; the bundle shows the hockey stick; `plan --capacity`
//! turns the result into a number of servers.

mod common;

use chatload::capacity::{self, CapacityOptions, Limit};
use chatload::engine::RunOptions;
use chatload::scenario::units::Micros;

const MAX_RATE: f64 = 1500.0;

fn knee_scenario() -> String {
    format!(
        r#"[scenario]
name = "knee"
seed = 3
loss_deadline = "5s"
drain = "2s"

[population.consumers]
users = 200
contacts = {{ uniform = {{ min = 3, max = 8 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "150/min per user"   # 500 messages/s at 1x
messages = 1
size = 32
read = 0.0
typing = 0.0

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "4s" }}]

[target]
max_rate = {MAX_RATE}

[thresholds]
"delivery.p99" = "< 100ms"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_knee_is_found_within_ten_percent_of_the_servers_rate() {
    let file = common::scenario_file(&knee_scenario());
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
    assert!(s.held && s.p99_us < 100_000 && s.lost == 0 && s.late_sends == 0);
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
    // take (2,250/s), no SLO; what it delivers per second while the load is held is its
    // saturated throughput (the backlog stays inside the 5 s deadline, so every delivery of
    // those seconds counts; the first second after the ramp is still filling the queue).
    // The knee must lie within 10% of that figure.
    let mut flood = capacity::scaled(&base, 4.5);
    flood.thresholds.clear();
    let r = chatload::engine::run(
        flood,
        &RunOptions {
            quiet: true,
            out: Some(common::bundle_dir()),
            ..RunOptions::default()
        },
    )
    .await
    .expect("flood run");
    let held: Vec<_> = r
        .summary
        .series
        .points
        .iter()
        .filter(|p| p.t_s >= 3.0 && p.t_s <= r.summary.duration_s)
        .collect();
    let saturated = held.iter().map(|p| p.delivered).sum::<u64>() as f64 / held.len() as f64;
    assert!(
        (saturated - MAX_RATE).abs() <= MAX_RATE * 0.05,
        "flooded, the server delivers {saturated:.0}/s"
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
    // Peak 5,000 messages/s × 1.25 over what one server held.
    let expect = (5000.0 * 1.25 / s.messages_per_s).ceil() as u64;
    assert!(
        text.contains(&format!("servers     {expect} for the peak")),
        "expected {expect} servers:\n{text}"
    );
}

#[test]
fn capacity_refuses_bad_flags_before_sending() {
    let file = common::scenario_file(&knee_scenario());
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

//! `chatload plan` agrees with the traffic the schedule generates (and so with what a run
//! sends), within sampling error, for every pattern, over a profile with a ramp.

use chatload::workload::{Population, Profile, Schedule};
use std::path::Path;
use std::sync::Arc;

const SCENARIO: &str = r#"[scenario]
name = "plan-check"
seed = 9
[population.consumers]
users = 3000
online = 0.5
contacts = { uniform = { min = 5, max = 15 } }
groups = 300
group_size = { uniform = { min = 3, max = 9 } }
[[pattern]]
kind = "direct_chat"
conversations = "2/min per user"
messages = { geometric = { mean = 4 } }
gap = { exponential = { mean = "100ms" } }
size = { uniform = { min = 10, max = 90 } }
[[pattern]]
kind = "group_chat"
rate = "10/min per group"
size = 50
[load]
stages = [{ ramp = "60s" }, { hold = "240s" }, { ramp_down = "60s", to = 0.5 }]
"#;

/// The same population under a workday curve compressed into 2 minutes and an 8× spike.
fn shaped() -> String {
    SCENARIO.replace(
        "[load]\nstages = [{ ramp = \"60s\" }, { hold = \"240s\" }, { ramp_down = \"60s\", to = 0.5 }]",
        "[load]\ndiurnal = \"workday\"\nday = \"2m\"\nstages = [{ ramp = \"60s\" }, { hold = \"120s\" }, { spike = \"60s\", rate = 8 }, { hold = \"60s\", rate = 0.5 }, { ramp_down = \"60s\", to = 0.5 }]",
    )
}

#[test]
fn plan_matches_the_generated_schedule_per_pattern() {
    check_plan_against_schedule(SCENARIO);
}

#[test]
fn plan_matches_the_schedule_under_spikes_and_a_diurnal_curve() {
    let text = shaped();
    assert_ne!(text, SCENARIO);
    check_plan_against_schedule(&text);
    let s = chatload::scenario::parse(Path::new("p.toml"), &text).unwrap();
    let flat = chatload::plan::plan(
        &chatload::scenario::parse(Path::new("p.toml"), SCENARIO).unwrap(),
        None,
    );
    let plan = chatload::plan::plan(&s, None);
    assert!(
        plan.peak.messages_per_s > 5.0 * flat.peak.messages_per_s,
        "the spike and the curve's peak show in the plan"
    );
}

fn check_plan_against_schedule(text: &str) {
    let s = Arc::new(chatload::scenario::parse(Path::new("p.toml"), text).unwrap());
    let plan = chatload::plan::plan(&s, None);
    let population = Arc::new(Population::build(&s.consumers, s.seed).unwrap());
    let profile = Profile::for_scenario(&s, population.users());
    let mut sched = Schedule::new(s.clone(), population.clone(), profile).unwrap();
    let n = s.patterns.len();
    let (mut messages, mut deliveries) = (vec![0f64; n], vec![0f64; n]);
    while let Some(o) = sched.next_order(u64::MAX) {
        if !o.action.is_message() {
            continue;
        }
        let p = o.pattern as usize;
        messages[p] += 1.0;
        deliveries[p] += match o.to {
            chatload::protocol::Recipient::User(_) | chatload::protocol::Recipient::Business(_) => {
                1.0
            }
            chatload::protocol::Recipient::Group(g) => {
                (population.group(g).unwrap().len() - 1) as f64
            }
        };
    }
    for (i, pp) in plan.patterns.iter().enumerate() {
        let (want, got) = (pp.expected_messages, messages[i]);
        if want == 0.0 {
            assert_eq!(got, 0.0, "{} sends nothing", pp.name);
            continue;
        }
        // Direct-chat messages come in conversations (a compound Poisson count: variance
        // E[M²]/E[M] = 7 times the mean for geometric mean 4), group messages are Poisson.
        // Allow 4 standard deviations plus 2% for the model's treatment of ramp edges.
        let dispersion = match pp.kind.as_str() {
            "direct_chat" => 7.0,
            "support_conversation" => 12.0,
            _ => 1.0,
        };
        let tolerance = 4.0 * (want * dispersion).sqrt() + 0.02 * want;
        assert!(
            (got - want).abs() < tolerance,
            "{}: schedule {got} plan {want} (±{tolerance:.0})",
            pp.name
        );
        let (want_d, got_d) = (pp.expected_deliveries, deliveries[i]);
        assert!(
            (got_d - want_d).abs() < 2.0 * tolerance * (want_d / want),
            "{}: deliveries {got_d} plan {want_d}",
            pp.name
        );
    }
    assert!(plan.peak.messages_per_s > plan.mean.messages_per_s);
}

#[test]
fn plan_matches_the_schedule_for_business_patterns() {
    // Support conversations (customer messages and replies, 2 x turns) and OTPs, thinned
    // by a spike.
    check_plan_against_schedule(
        r#"[scenario]
name = "plan-business"
seed = 4
[population.consumers]
users = 2000
contacts = 5
[population.businesses]
throughput = 1000
[[pattern]]
kind = "support_conversation"
conversations = "2/min per user"
turns = 3
customer_gap = "2s"
agent_think = "3s"
late = 0
[[pattern]]
kind = "otp_burst"
rate = "20/s"
[load]
stages = [{ ramp = "30s" }, { hold = "120s" }, { spike = "30s", rate = 4 }]
"#,
    );
}

#[test]
fn plan_scales_to_a_billion_users() {
    let s = chatload::scenario::parse(Path::new("p.toml"), SCENARIO).unwrap();
    let small = chatload::plan::plan(&s, None);
    let big = chatload::plan::plan(&s, Some(1e9));
    let factor = 1e9 / 3000.0;
    assert!((big.peak.messages_per_s / small.peak.messages_per_s - factor).abs() / factor < 1e-9);
    assert!((big.connections_peak - 0.5e9).abs() < 1.0);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "plan",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios/evening-peak.toml")
                .to_str()
                .unwrap(),
            "--users",
            "1_000_000_000",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["users"].as_f64(), Some(1e9));
    assert!(v["peak"]["messages_per_s"].as_f64().unwrap() > 1e5);
    // The table for a billion people (media at terabits): every column stands apart.
    for s in [&s, &chatload::scenario::load(&evening_peak()).unwrap()] {
        let table = chatload::plan::render(&chatload::plan::plan(s, Some(1e9)));
        for line in table.lines() {
            assert!(
                !line
                    .as_bytes()
                    .windows(3)
                    .any(|w| &w[..2] == b"/s" && w[2].is_ascii_digit()),
                "columns run together: {line}"
            );
        }
    }
}

fn evening_peak() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/evening-peak.toml")
}

mod common;

/// What a run really sends agrees with `plan`, pattern by pattern, within sampling error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_matches_what_a_run_sends() {
    let text = r#"[scenario]
name = "plan-run"
seed = 17
loss_deadline = "3s"
drain = "3s"

[population.consumers]
users = 400
contacts = { uniform = { min = 4, max = 10 } }
groups = 40
group_size = { uniform = { min = 3, max = 7 } }

[population.businesses]
throughput = 1000

[[pattern]]
kind = "direct_chat"
name = "chat"
conversations = "6/min per user"
messages = { geometric = { mean = 3 } }
gap = { exponential = { mean = "500ms" } }
size = 30

[[pattern]]
kind = "group_chat"
name = "groups"
rate = "30/min per group"
size = 30

[[pattern]]
kind = "otp_burst"
name = "otp"
rate = "15/s"

[[pattern]]
kind = "business_broadcast"
name = "campaign"
start = "2s"
recipients = 300
send_rate = "40/s"
read = 0
reply = 0

[load]
stages = [{ ramp = "2s" }, { hold = "10s" }]
"#;
    let file = common::scenario_file(text);
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let plan = chatload::plan::plan(&scenario, None);
    let r = common::run_text(text, None).await;
    for (pp, ps) in plan.patterns.iter().zip(&r.summary.patterns) {
        let want = pp.expected_messages;
        let got = ps.accounting.messages_sent as f64;
        // Conversations make direct-chat counts over-dispersed (geometric mean 3: variance
        // about 5 times the mean); the rest are Poisson or fixed.
        let dispersion = if pp.kind == "direct_chat" { 5.0 } else { 1.0 };
        let tolerance = 4.0 * (want * dispersion).sqrt() + 0.03 * want;
        assert!(
            (got - want).abs() <= tolerance,
            "{}: run sent {got}, plan expected {want:.0} (±{tolerance:.0})",
            pp.name
        );
        let want_d = pp.expected_deliveries;
        let got_d = ps.accounting.delivered as f64;
        assert!(
            (got_d - want_d).abs() <= tolerance * (want_d / want.max(1.0)).max(1.0),
            "{}: run delivered {got_d}, plan expected {want_d:.0}",
            pp.name
        );
    }
}

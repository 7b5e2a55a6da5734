//! The schedule is a pure function of the scenario and its seed, and its traffic has the
//! rates the scenario declares.

use chatload::protocol::Recipient;
use chatload::workload::{Order, Population, Profile, Schedule};
use std::path::Path;
use std::sync::Arc;

fn schedule(text: &str, seed: Option<u64>) -> (Schedule, Arc<chatload::scenario::Scenario>) {
    let mut s = chatload::scenario::parse(Path::new("t.toml"), text).unwrap();
    if let Some(seed) = seed {
        s.seed = seed;
    }
    let s = Arc::new(s);
    let population = Arc::new(Population::build(&s.consumers, s.seed).unwrap());
    let profile = Profile::for_scenario(&s, population.users());
    (Schedule::new(s.clone(), population, profile).unwrap(), s)
}

fn all_orders(mut sched: Schedule) -> Vec<Order> {
    let mut out = Vec::new();
    while let Some(o) = sched.next_order(u64::MAX) {
        out.push(o);
    }
    out
}

fn quickstart() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml"))
        .unwrap()
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let a = all_orders(schedule(&quickstart(), None).0);
    let b = all_orders(schedule(&quickstart(), None).0);
    assert!(a.len() > 2_000, "{}", a.len());
    assert_eq!(a[..2_000], b[..2_000]);
    assert_eq!(a, b);
    let c = all_orders(schedule(&quickstart(), Some(43)).0);
    assert_ne!(a[..100], c[..100], "another seed, other traffic");
}

#[test]
fn orders_come_in_time_order_and_inside_the_run() {
    let (sched, s) = schedule(&quickstart(), None);
    let orders = all_orders(sched);
    assert!(
        orders
            .windows(2)
            .all(|w| w[0].intended_us <= w[1].intended_us)
    );
    assert!(orders.iter().all(|o| o.intended_us < s.duration.0));
    let mut ids: Vec<u64> = orders.iter().map(|o| o.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), orders.len(), "every id is unique");
    assert!(orders.iter().all(|o| match o.to {
        Recipient::User(u) => u != o.sender,
        Recipient::Group(_) | Recipient::Business(_) => true,
    }));
}

#[test]
fn generated_rates_match_the_declared_ones() {
    // Everyone online for the whole hour-long hold: conversation starts are Poisson at
    // users × rate, and each has a geometric number of messages with the declared mean.
    let text = r#"[scenario]
name = "rates"
seed = 5
[population.consumers]
users = 2000
contacts = 10
groups = 100
group_size = 5
[[pattern]]
kind = "direct_chat"
conversations = "6/min per user"
messages = { geometric = { mean = 3 } }
gap = "1s"
[[pattern]]
kind = "group_chat"
rate = "12/min per group"
[load]
stages = [{ ramp = "0s" }, { hold = "10m" }]
"#;
    let (sched, _) = schedule(text, None);
    let orders = all_orders(sched);
    // Users become eligible 1 s after the start and stop 1 s before the end.
    let window_s = 600.0 - 2.0;
    let groups = orders.iter().filter(|o| o.pattern == 1).count() as f64;
    let want_groups = 100.0 * 12.0 / 60.0 * window_s;
    // A Poisson count: within 4 standard deviations.
    assert!(
        (groups - want_groups).abs() < 4.0 * want_groups.sqrt(),
        "group messages {groups} want {want_groups}"
    );
    let direct = orders
        .iter()
        .filter(|o| o.pattern == 0 && o.action.is_message())
        .count() as f64;
    // Conversations cut by the end lose their tail; the error is a few gaps' worth.
    let want_direct = 2000.0 * 6.0 / 60.0 * window_s * 3.0;
    assert!(
        (direct - want_direct).abs() / want_direct < 0.02,
        "direct messages {direct} want {want_direct}"
    );
}

//! Consumer control traffic and server faults end to end: read receipts, typing and presence
//! fanned out and measured; presence churn connecting and disconnecting users on their own
//! schedules; delivery latency drawn from a distribution, stalls and connection resets that
//! lose nothing.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_typing_and_presence_reach_their_recipients() {
    let text = r#"[scenario]
name = "signals"
seed = 12
loss_deadline = "3s"
drain = "4s"

[population.consumers]
users = 300
contacts = { uniform = { min = 3, max = 8 } }

[[pattern]]
kind = "direct_chat"
conversations = "30/min per user"
messages = 4
gap = "2s"
reply = 0.5
size = 4
media = { text = 0.7, image = 0.2, video = 0.1 }
read = 1.0
read_delay = "200ms"
typing = 1.0

[[pattern]]
kind = "presence"
session = { exponential = { mean = "6s" } }
offline = { exponential = { mean = "3s" } }
heartbeat = "1s"

[load]
stages = [{ ramp = "1s" }, { hold = "11s" }]
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let chat = &s.patterns[0].counters;
    let presence = &s.patterns[1].counters;
    // Typing: every text after the first of a conversation, sent to an online partner.
    assert!(chat.typing_sent > 50, "{chat:?}");
    assert!(
        chat.typing_seen as f64 >= 0.9 * chat.typing_sent as f64
            && chat.typing_seen <= chat.typing_sent,
        "typing seen {} of {}",
        chat.typing_seen,
        chat.typing_sent
    );
    // Reads: every delivered message is read 200 ms later (unless the reader left first),
    // and its receipt goes back to the sender.
    assert!(chat.reads as f64 >= 0.8 * chat.delivered as f64, "{chat:?}");
    assert!(
        chat.read_receipts as f64 >= 0.9 * chat.reads as f64,
        "{chat:?}"
    );
    let rr = s.metrics.get("read_receipt").expect("read receipt latency");
    assert!(
        rr.p50_us < 50_000,
        "a receipt crosses loopback quickly: {rr:?}"
    );
    // Media: a fifth images of ~120 kB and a tenth videos of ~2 MB by default sizes.
    assert!(chat.media_bytes > 1_000_000, "{chat:?}");
    // Presence: users come and go (sessions of 6 s, gaps of 3 s) and announce it.
    assert!(presence.presence_sent > 300, "{presence:?}");
    assert!(
        presence.presence_seen > 0 && presence.heartbeats > 300,
        "{presence:?}"
    );
    let connected: Vec<u64> = s.series.points.iter().map(|p| p.connected).collect();
    let mid = connected[connected.len() / 2] as f64;
    assert!(
        (mid / 300.0 - 4.0 / 6.0).abs() < 0.12,
        "about two thirds connected mid-run: {connected:?}"
    );
    assert!(s.accounting.balances(), "{:?}", s.accounting);
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_stalls_and_resets_from_the_server_are_measured_and_lose_nothing() {
    let knobs = r#"[target]
latency = { lognormal = { median = "8ms", sigma = 0.3 }, max = "40ms" }
stall_every = 400
stall = "500ms"
reset_every = 500
"#;
    let r = run_text(&chat_scenario(150, 6, 0, knobs), None).await;
    let s = &r.summary;
    let server = s.server.clone().expect("server stats");
    assert!(server.stalled > 0 && server.resets > 0, "{server:?}");
    let d = s.metrics["delivery"];
    assert!(
        d.min_us >= reported_floor(3_000),
        "added latency shows: {d:?}"
    );
    assert!(
        (7_000..=12_000).contains(&d.p50_us),
        "median near 8 ms: {d:?}"
    );
    assert!(d.max_us >= 250_000, "a stall shows in the tail: {d:?}");
    assert_eq!(
        s.errors.get("connection_reset").copied().unwrap_or(0),
        server.resets,
        "every reset was seen as one: {:?}",
        s.errors
    );
    assert_eq!(s.accounting.lost, 0, "resent on resume: {:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_all_storm_reaches_everyone_and_a_share_fetches_history() {
    let text = r#"[scenario]
name = "mention-all"
seed = 30
loss_deadline = "3s"
drain = "3s"

[population.consumers]
users = 400
groups = 20
group_size = 5

[[pattern]]
kind = "group_chat"
rate = "6/min per group"
size = 100
mention_all = { at = "3s", members = 400, open = 0.5, open_delay = { exponential = { mean = "500ms" } } }

[load]
stages = [{ ramp = "1s" }, { hold = "5s" }]
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let c = &s.patterns[0].counters;
    // The storm message owes 399 deliveries on top of the small groups' traffic.
    assert!(c.deliveries_owed >= 399, "{c:?}");
    let fanout = s.metrics["fanout"];
    assert!(fanout.max_us > 0, "{fanout:?}");
    // Half of 399 members open the group: binomial, within 4 standard deviations (±40).
    assert!(
        (c.history_requests as f64 - 199.5).abs() < 40.0,
        "history fetches {}",
        c.history_requests
    );
    assert_eq!(
        c.history_received, c.history_requests,
        "every fetch answered"
    );
    assert_eq!(s.metrics["history"].count, c.history_received);
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

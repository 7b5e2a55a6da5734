//! End-to-end runs on real loopback sockets against the embedded reference server: the
//! accounting identity, the latency truth of a known delay, and loss, duplicates and
//! reordering that a faulty server introduces on purpose are all caught exactly.

mod common;

use chatload::report::Summary;
use common::*;

fn assert_ordered(s: &Summary) {
    for (name, m) in &s.metrics {
        assert!(m.count > 0, "{name} has samples");
        assert!(
            m.min_us <= m.p50_us
                && m.p50_us <= m.p90_us
                && m.p90_us <= m.p99_us
                && m.p99_us <= m.p999_us
                && m.p999_us <= m.max_us,
            "{name} percentiles out of order: {m:?}"
        );
        assert!(
            m.mean_us >= m.min_us as f64 && m.mean_us <= m.max_us as f64,
            "{name} mean out of range"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_balances_every_delivery() {
    let r = run_text(&chat_scenario(200, 4, 20, ""), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(
        a.messages_sent > 300,
        "enough traffic to mean something: {a:?}"
    );
    assert!(
        a.sent > a.messages_sent,
        "group fan-out owes more deliveries than messages"
    );
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.in_flight, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.sent, a.delivered);
    assert_eq!(
        (a.duplicated, a.reordered, a.unexpected, a.not_sent),
        (0, 0, 0, 0)
    );
    assert_eq!(
        a.acked, a.messages_sent,
        "the server acknowledged every send"
    );
    assert_eq!(
        a.receipts, a.delivered,
        "one delivered receipt per delivery"
    );
    let d = s.metrics["delivery"].count + s.metrics.get("delivery_offline").map_or(0, |m| m.count);
    assert_eq!(d, a.delivered, "every delivery is in a delivery histogram");
    assert_eq!(s.metrics["send"].count, a.acked);
    assert_eq!(s.metrics["connect"].count, 200);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let server = s.server.clone().expect("embedded server stats");
    assert_eq!(server.accepted, a.messages_sent);
    assert_eq!(server.delivered, a.delivered);
    assert_ordered(s);
    let per_pattern: u64 = s.patterns.iter().map(|p| p.accounting.delivered).sum();
    assert_eq!(per_pattern, a.delivered);
    assert!(s.series.points.len() >= 4, "one point per second");
}

/// Users on shards of their own (`chatload run --threads 2` and up), each shard with its own
/// pacer walking the whole schedule: every order is handed out once, by the pacer of its
/// sender's shard, so the same seeded run gives the same books as on one shard — against the
/// embedded server (which keeps shard 0 to itself) and against a server of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_run_on_shards_hands_out_every_order_once() {
    let text = chat_scenario(120, 4, 12, "");
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    for target in [None, Some(server.url())] {
        let one = run_text_on_shards(&text, target.clone(), 1).await.summary;
        let (a1, workers1) = (
            &one.accounting,
            one.machine.as_ref().and_then(|m| m.workers),
        );
        assert_eq!(workers1, Some(1), "{target:?}");
        for shards in [2, 3] {
            let s = run_text_on_shards(&text, target.clone(), shards)
                .await
                .summary;
            let a = &s.accounting;
            let at = format!("{shards} shards, target {target:?}: {a:?}");
            assert_eq!(s.machine.as_ref().and_then(|m| m.workers), Some(shards));
            assert!(a.messages_scheduled > 200, "{at}");
            assert_eq!(
                (a.messages_scheduled, a.messages_sent, a.sent, a.delivered),
                (
                    a1.messages_scheduled,
                    a1.messages_sent,
                    a1.sent,
                    a1.delivered
                ),
                "{at}"
            );
            assert_eq!(a.messages_sent, a.messages_scheduled, "{at}");
            assert_eq!(a.delivered, a.sent, "{at}");
            assert_eq!(
                (a.lost, a.duplicated, a.reordered, a.unexpected, a.not_sent),
                (0, 0, 0, 0, 0),
                "{at}"
            );
            assert_eq!((a.acked, a.unacknowledged), (a.messages_sent, 0), "{at}");
            assert!(a.balances(), "{at}");
            assert_eq!(s.metrics["connect"].count, 120, "{at}");
            assert!(s.errors.is_empty(), "{:?}", s.errors);
            let per_pattern: Vec<u64> = s.patterns.iter().map(|p| p.accounting.sent).collect();
            let per_pattern1: Vec<u64> = one.patterns.iter().map(|p| p.accounting.sent).collect();
            assert_eq!(per_pattern, per_pattern1, "{at}");
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_chat_delivery_count_equals_delivered() {
    let r = run_text(&chat_scenario(100, 3, 0, ""), None).await;
    let a = &r.summary.accounting;
    assert_eq!(r.summary.metrics["delivery"].count, a.delivered);
    assert_eq!(a.lost, 0);
    assert!(a.balances());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_delay_is_measured_truthfully() {
    let r = run_text(
        &chat_scenario(100, 3, 0, "[target]\ndelay = \"25ms\"\n"),
        None,
    )
    .await;
    let d = r.summary.metrics["delivery"];
    eprintln!("delivery with a 25 ms server delay: {d:?}");
    assert!(d.count > 100, "{d:?}");
    assert!(
        d.min_us >= reported_floor(25_000),
        "nothing arrives before the delay: {d:?}"
    );
    assert!(
        (25_000..=27_000).contains(&d.p50_us),
        "p50 {} µs should be 25–27 ms",
        d.p50_us
    );
    let send = r.summary.metrics["send"];
    assert!(
        send.p50_us < 5_000,
        "the server acks before the delivery delay: {send:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_deliveries_are_reported_lost_exactly() {
    let r = run_text(
        &chat_scenario(100, 3, 10, "[target]\ndrop_every = 7\n"),
        None,
    )
    .await;
    let a = &r.summary.accounting;
    let dropped = r.summary.server.expect("server stats").dropped;
    assert!(dropped > 10, "the server dropped some: {dropped}");
    assert_eq!(a.lost, dropped, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.in_flight, 0);
    // Loss over time: every lost delivery in the second its message was meant to leave,
    // spread over the seconds that sent (every 7th delivery, so most seconds have some).
    let series = &r.summary.series.points;
    assert_eq!(series.iter().map(|p| p.lost).sum::<u64>(), a.lost);
    let seconds_with_loss = series.iter().filter(|p| p.lost > 0).count();
    assert!(seconds_with_loss >= 3, "{series:?}");
    let html = std::fs::read_to_string(r.bundle_dir.join("report.html")).unwrap();
    assert!(
        html.contains("data-series=\"lost\""),
        "the page draws loss over time"
    );
    let failed: Vec<_> = r.summary.thresholds.iter().filter(|v| !v.passed).collect();
    assert!(failed.is_empty());
}

/// A target that takes and delivers every message but leaves some sends unconfirmed: those
/// have no sample in `send`, and before they were in no count either, so `send.p99` passed
/// on the sends that were answered (a target that stopped answering half its sends looked
/// as fast as one that answered all). Now each is counted `unacknowledged`, said beside the
/// accounting, and a send rule counts them as slower than every answered send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_target_never_confirmed_are_counted_and_fail_send_rules() {
    let r = run_text(
        &chat_scenario(
            60,
            3,
            0,
            "[target]\ndrop_ack_every = 9\n\n[thresholds]\n\"send.p99\" = \"< 1h\"\n\"send.p50\" = \"< 1h\"\n\"loss\" = \"== 0\"\n",
        ),
        None,
    )
    .await;
    let s = &r.summary;
    let a = &s.accounting;
    let withheld = s.server.as_ref().expect("server stats").acks_dropped;
    // Every 9th send of the run went unconfirmed, and no user reconnected to send it again.
    assert_eq!(withheld, a.messages_sent / 9, "{a:?}");
    assert!(withheld >= 10, "{a:?}");
    assert_eq!(a.unacknowledged, withheld, "{a:?}");
    assert_eq!(a.acked + a.unacknowledged, a.messages_sent, "{a:?}");
    assert_eq!(s.metrics["send"].count, a.acked);
    let per_pattern: u64 = s.patterns.iter().map(|p| p.accounting.unacknowledged).sum();
    assert_eq!(per_pattern, withheld);
    // Taken and delivered all the same: nothing is lost.
    assert_eq!((a.lost, a.in_flight), (0, 0), "{a:?}");
    let rule = |name: &str| common::verdict(s, name);
    // One send in nine is more than one in a hundred: the p99 lies among the unanswered.
    let p99 = rule("send.p99");
    assert!(!p99.passed, "{p99:?}");
    assert_eq!(p99.observed, None);
    assert!(
        p99.message.contains(&format!(
            "but {} of {} sends were never acknowledged",
            withheld, a.messages_sent
        )),
        "{}",
        p99.message
    );
    assert!(rule("send.p50").passed, "{:?}", rule("send.p50"));
    assert!(rule("loss").passed);
    assert!(!s.passed);
    let note = format!(
        "sends never acknowledged {withheld} of {}: the target neither confirmed nor refused them by the end, and the send latencies are of the {} it confirmed",
        a.messages_sent, a.acked
    );
    for file in ["summary.md", "report.html"] {
        let text = std::fs::read_to_string(r.bundle_dir.join(file)).unwrap();
        assert!(text.contains(&note), "{file} says {note:?}: {text}");
    }
    let junit = std::fs::read_to_string(r.bundle_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("were never acknowledged"), "{junit}");
}

/// A drain shorter than the loss deadline ends the run with deliveries in flight: neither
/// delivered nor lost. A loss rule may pass only if it would hold with all of them lost;
/// before, `loss == 0` passed with 0 lost and the in-flight ones never looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_rule_does_not_pass_on_deliveries_still_in_flight() {
    let text = chat_scenario(
        60,
        4,
        0,
        "[target]\ndelay = \"700ms\"\n\n[thresholds]\n\"loss\" = \"== 0\"\n\"loss_rate\" = \"< 60%\"\n",
    )
    .replace(
        "loss_deadline = \"1s\"\ndrain = \"3s\"",
        "loss_deadline = \"5s\"\ndrain = \"200ms\"",
    );
    assert!(text.contains("drain = \"200ms\""));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.in_flight > 0 && a.lost == 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    let rule = |name: &str| common::verdict(s, name);
    let loss = rule("loss ==");
    assert!(!loss.passed, "{loss:?}");
    assert_eq!(loss.observed, Some(0.0));
    assert!(
        loss.message.contains(&format!(
            "but {} deliveries were still in flight when the run ended, and with them lost it would be {}",
            a.in_flight, a.in_flight
        )) && loss.message.contains("`drain` at least as long as its `loss_deadline`"),
        "{}",
        loss.message
    );
    // Even with every one of them lost the share stays under 60%: that rule holds.
    assert!(a.in_flight * 100 < a.sent * 60, "{a:?}");
    assert!(rule("loss_rate").passed, "{:?}", rule("loss_rate"));
    assert!(!s.passed);
}

/// A generator far behind a load it cannot make still counts every message of the
/// scenario: what its pacer had not reached when the profile ended is scheduled and not
/// sent, chatload behind. Before, those messages were in no count (a 6 s run of 4,863,520
/// messages showed 1,136,577 scheduled, with nothing to say 3.7 million were missing).
// One thread for the pacer, the users and the embedded server: the pacer cannot keep up.
#[tokio::test(flavor = "current_thread")]
async fn messages_the_pacer_never_reached_are_counted_not_sent() {
    let text = r#"[scenario]
name = "flood"
seed = 3
loss_deadline = "2s"
[population.consumers]
users = 200
contacts = { uniform = { min = 2, max = 6 } }
[[pattern]]
kind = "direct_chat"
conversations = "20000/s per user"
messages = 1
size = 16
typing = 0
read = 0
media = { text = 1 }
[load]
stages = [{ ramp = "200ms" }, { hold = "1800ms" }]
"#;
    let mut scenario = chatload::scenario::parse(std::path::Path::new("t.toml"), text).unwrap();
    scenario.source_digest.clear();
    let scenario = std::sync::Arc::new(scenario);
    let population = std::sync::Arc::new(
        chatload::workload::Population::build(&scenario.consumers, scenario.seed).unwrap(),
    );
    let profile = chatload::workload::Profile::for_scenario(&scenario, population.users());
    let mut schedule =
        chatload::workload::Schedule::new(scenario.clone(), population, profile).unwrap();
    let mut planned = 0u64;
    while let Some(o) = schedule.next_order(u64::MAX) {
        planned += u64::from(o.action.is_message());
    }
    let r = run_text(text, None).await;
    let a = &r.summary.accounting;
    assert!(
        a.not_sent_reasons.chatload_behind > planned / 10,
        "the generator fell far behind {planned} messages in 2 s: {a:?}"
    );
    eprintln!(
        "{} of {planned} messages were never reached by the pacer",
        a.not_sent_reasons.chatload_behind
    );
    assert_eq!(a.messages_scheduled, planned, "{a:?}");
    assert!(a.schedule_balances() && a.balances(), "{a:?}");
    assert_eq!(r.summary.schedule_uncounted_from_s, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_deliveries_are_caught_exactly() {
    let r = run_text(
        &chat_scenario(100, 3, 10, "[target]\nduplicate_every = 5\n"),
        None,
    )
    .await;
    let a = &r.summary.accounting;
    let duplicated = r.summary.server.expect("server stats").duplicated;
    assert!(duplicated > 10);
    assert_eq!(a.duplicated, duplicated, "{a:?}");
    assert_eq!(a.lost, 0);
    assert!(a.balances());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_deliveries_are_caught_exactly() {
    // Two people in one long conversation: every delivery to one of them comes from the
    // other, so each swapped pair is a reordering inside the conversation.
    let text = r#"[scenario]
name = "reorder"
seed = 3
loss_deadline = "2s"
drain = "3s"

[population.consumers]
users = 2
contacts = 1

[[pattern]]
kind = "direct_chat"
conversations = "6/min per user"
messages = 400
gap = "15ms"
reply = 0.5
size = 20

[load]
stages = [{ ramp = "1s" }, { hold = "4s" }]

[target]
reorder_every = 9
"#;
    let r = run_text(text, None).await;
    let a = &r.summary.accounting;
    let reordered = r.summary.server.expect("server stats").reordered;
    assert!(reordered >= 5, "the server reordered some: {reordered}");
    assert_eq!(a.reordered, reordered, "{a:?}");
    assert_eq!(a.lost, 0);
    assert_eq!(a.duplicated, 0);
    assert!(a.balances());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_dies_mid_run_is_survived_and_counted() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let addr = server.addr;
    let url = server.url();
    let killer = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        server.shutdown().await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        // Back on the same address, empty: users must reconnect.
        chatload::server::start(&addr.to_string(), Default::default())
            .await
            .unwrap()
    });
    // On two shards, both holding users: each reconnects on its own thread's event loop.
    let r = run_text_on_shards(&chat_scenario(100, 10, 0, ""), Some(url), 2).await;
    let revived = killer.await.unwrap();
    let s = &r.summary;
    assert_eq!(s.ended, "completed");
    let trouble: u64 = s.errors.values().sum();
    assert!(
        trouble >= 100,
        "every user noticed the outage: {:?}",
        s.errors
    );
    assert!(
        s.metrics["connect"].count >= 190,
        "nearly every user connected twice: {:?}",
        s.metrics["connect"]
    );
    assert!(s.accounting.balances(), "{:?}", s.accounting);
    assert!(s.accounting.delivered > 0);
    let back = s
        .series
        .points
        .iter()
        .filter(|p| p.t_s >= 6.0)
        .map(|p| p.connected)
        .max()
        .unwrap_or(0);
    assert!(
        back >= 95,
        "users are back after the outage: {:?}",
        s.series.points
    );
    revived.shutdown().await;
}

/// A target named by its host name rather than an address: every user connects (those
/// whose turn is an address the server does not listen on fall back to the next) and the
/// books balance. The name is looked up once for the run (`transport::resolve`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_named_by_host_name_is_reached_by_every_user() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url().replace("127.0.0.1", "localhost");
    assert!(url.starts_with("ws://localhost:"), "{url}");
    let r = run_text(&chat_scenario(60, 2, 0, ""), Some(url)).await;
    let s = &r.summary;
    assert_eq!(s.peak_connected, 60, "{:?}", s.errors);
    assert!(s.errors.is_empty(), "{:?}", s.error_examples);
    assert_eq!(s.accounting.lost, 0);
    assert!(s.accounting.delivered > 0 && s.accounting.balances());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_recovers_every_user_without_loss_or_duplicates() {
    let storm = "[[pattern]]\nname = \"blip\"\nkind = \"reconnect_storm\"\nat = \"3s\"\nfraction = 1.0\nbackoff = \"full_jitter\"\nbase = \"100ms\"\ncap = \"1s\"\n";
    let text = chat_scenario(150, 6, 10, "").replace("[load]", &format!("{storm}\n[load]"));
    // On two shards: the storm's reconnects happen on each user's own thread.
    let r = run_text_on_shards(&text, None, 2).await;
    let s = &r.summary;
    let st = &s.storms[0];
    assert_eq!(
        (st.dropped, st.reconnected, st.gave_up),
        (150, 150, 0),
        "{st:?}"
    );
    assert!(st.time_to_all_us.is_some_and(|t| t < 3_000_000), "{st:?}");
    assert!(st.time_to_95_us <= st.time_to_99_us && st.time_to_99_us <= st.time_to_all_us);
    assert!(st.peak_connects_per_s >= 50, "{st:?}");
    assert_eq!(s.metrics["connect"].count, 300, "everyone connected twice");
    let a = &s.accounting;
    assert_eq!(
        (a.lost, a.duplicated, a.in_flight),
        (0, 0, 0),
        "the offline queue and resume lose nothing: {a:?}"
    );
    assert!(a.balances());
    assert!(
        s.metrics
            .get("delivery_offline")
            .is_none_or(|d| d.count < a.delivered)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_storm_is_carried_out_by_the_server_and_recovered() {
    // Half the users are asked by the server to leave (`goaway`, then a graceful close).
    let storm = "[[pattern]]\nname = \"drain\"\nkind = \"reconnect_storm\"\nat = \"3s\"\nfraction = 0.5\nvia = \"goaway\"\nbackoff = \"exponential\"\nbase = \"200ms\"\ncap = \"2s\"\n";
    let text = chat_scenario(150, 6, 10, "").replace("[load]", &format!("{storm}\n[load]"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let st = &s.storms[0];
    let asked = s.server.as_ref().expect("server stats").goaways;
    assert!((50..=100).contains(&asked), "about half of 150: {asked}");
    assert_eq!(
        (st.dropped, st.reconnected, st.gave_up),
        (asked, asked, 0),
        "{st:?}"
    );
    // Exponential backoff from 200 ms: the first attempt comes 200 ms after the goaway.
    let back = s.metrics["reconnect"];
    assert!(
        back.min_us >= reported_floor(200_000) && back.max_us < 1_000_000,
        "{back:?}"
    );
    assert_eq!(
        s.errors_total, 0,
        "a graceful drain is no error: {:?}",
        s.errors
    );
    let a = &s.accounting;
    assert_eq!((a.lost, a.duplicated), (0, 0), "{a:?}");
    assert!(a.balances());
}

/// Past 1,000 consumers each goose user carries a pod of several (`goose_bridge`): every
/// consumer of every pod still connects once, on its own time, and its books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_a_thousand_users_every_consumer_of_every_pod_runs() {
    let text = r#"[scenario]
name = "pods"
seed = 5
loss_deadline = "2s"
drain = "3s"

[population.consumers]
users = 2_500
contacts = { uniform = { min = 2, max = 6 } }

[[pattern]]
kind = "direct_chat"
conversations = "3/min per user"
messages = 2
gap = { exponential = { mean = "200ms" } }
size = 32

[load]
stages = [{ ramp = "2s" }, { hold = "3s" }]
"#;
    // On two shards: each consumer of a pod runs on its own user's shard.
    let r = run_text_on_shards(text, None, 2).await;
    let s = &r.summary;
    assert_clean(s);
    assert_eq!(
        s.metrics["connect"].count, 2_500,
        "each consumer connected once"
    );
    assert_eq!(s.peak_connected, 2_500);
    assert!(
        s.accounting.messages_sent > 300,
        "traffic flowed: {:?}",
        s.accounting
    );
}

//! The business API end to end on loopback: every error code is produced by the reference
//! server, met by the client as the pattern says, and counted the same on both sides; every
//! status is joined to its send; the 24-hour window refuses late replies and only those.

mod common;

use chatload::report::Summary;
use chatload::report::summary::{BusinessSummary, PatternSummary};
use common::*;

fn pattern<'a>(s: &'a Summary, name: &str) -> &'a PatternSummary {
    s.patterns
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("pattern {name}"))
}

fn business<'a>(s: &'a Summary, name: &str) -> &'a BusinessSummary {
    pattern(s, name)
        .business
        .as_ref()
        .expect("business summary")
}

/// Refusals the server counted, by code.
fn refused(s: &Summary, code: u32) -> u64 {
    s.server
        .as_ref()
        .expect("embedded server stats")
        .business_refused
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_limit_is_enforced_and_the_client_slows_to_the_tier() {
    // A campaign offered at 50/s against a 20 mps tier: the client must slow to the tier and
    // still get every message accepted; past the messaging limit they fail as statuses.
    let text = r#"[scenario]
name = "tier"
seed = 21
loss_deadline = "10s"
drain = "10s"

[population.consumers]
users = 300

[population.businesses]
throughput = 20
messaging_limit = 100

[[pattern]]
kind = "business_broadcast"
name = "campaign"
start = "1s"
recipients = 120
send_rate = "50/s"
read = 0
reply = 0

[load]
stages = [{ ramp = "1s" }, { hold = "9s" }]
"#;
    // On two shards: the business orders come from the pacer of the users' shard.
    let r = run_text_on_shards(text, None, 2).await;
    let s = &r.summary;
    let campaign = business(s, "campaign");
    assert_eq!(campaign.requests, 120);
    assert_eq!(
        campaign.accepted, 120,
        "slowed to the tier, all got through"
    );
    assert!(campaign.throttled_130429 > 0, "{campaign:?}");
    assert_eq!(campaign.throttled_130429, refused(s, 130429));
    // At 20/s after a one-second burst of 20, the last of 120 is accepted about 5 s after
    // the campaign starts, although it was meant to go 2.4 s after.
    let send = pattern(s, "campaign").metrics["send"];
    assert!(
        send.max_us > 2_000_000 && send.max_us < 5_000_000,
        "slowed sends waited: {send:?}"
    );
    // Deliveries follow acceptance: at most the tier plus its one-second burst per second.
    let delivered_per_s: Vec<u64> = s.series.points.iter().map(|p| p.delivered).collect();
    assert!(
        delivered_per_s.iter().all(|n| *n <= 45),
        "never above the tier and its burst: {delivered_per_s:?}"
    );
    // The messaging limit: 100 unique recipients, the other 20 accepted and then failed.
    assert_eq!((campaign.status_sent, campaign.status_failed), (100, 20));
    assert_eq!(pattern(s, "campaign").counters.failed_limit, 20);
    assert_eq!(s.accounting.failed, 20);
    assert_eq!(campaign.missing_statuses, 0);
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
    // The business API's answers, refusals too, are measured to their arrival, as the
    // deliveries on the users' WebSockets are: one `read_lag` sample each (222 for 100
    // deliveries and 122 answers; 100 through reqwest). Nine in ten of the answers at
    // least: the first segments after a machine's first stamping socket may come unstamped
    // while Linux turns stamping on.
    let read_lag = s.metrics.get("read_lag").map_or(0, |m| m.count);
    let answers = campaign.accepted + campaign.throttled_130429;
    assert!(
        read_lag * 10 >= s.accounting.delivered * 10 + answers * 9,
        "read_lag {read_lag} for {} deliveries and {answers} answers",
        s.accounting.delivered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_rate_refusals_are_retried_after_4_to_the_x_seconds() {
    // Two users get OTPs at 1.5/s each, above a pair rate of 1/s with bursts of 3.
    let text = r#"[scenario]
name = "pair"
seed = 4
loss_deadline = "30s"
drain = "30s"

[population.consumers]
users = 2

[population.businesses]
throughput = 1000
pair_burst = 3
pair_interval = "1s"

[[pattern]]
kind = "otp_burst"
name = "otp"
rate = "3/s"
max_retries = 4

[load]
stages = [{ ramp = "1s" }, { hold = "7s" }]
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let otp = business(s, "otp");
    assert!(otp.pair_limited_131056 > 0, "{otp:?}");
    assert_eq!(otp.pair_limited_131056, refused(s, 131056));
    assert_eq!(
        otp.accepted, otp.requests,
        "every OTP got through after backing off"
    );
    // Waits of 1, 4, 16 s: a refused OTP is accepted at least 1 s after it was meant to go.
    let send = pattern(s, "otp").metrics["send"];
    assert!(send.max_us >= 1_000_000, "{send:?}");
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_errors_and_failed_statuses_are_counted_on_both_sides() {
    let text = r#"[scenario]
name = "faults"
seed = 5
loss_deadline = "4s"
drain = "6s"

[population.consumers]
users = 400

[population.businesses]
throughput = 1000

[[pattern]]
kind = "business_broadcast"
name = "campaign"
recipients = 400
send_rate = "80/s"
marketing = 1.0
read = 1.0
read_delay = "300ms"
reply = 0.25
reply_delay = "200ms"
timeout = "1s"
max_retries = 6

[[pattern]]
kind = "otp_burst"
name = "otp"
rate = "20/s"
timeout = "1s"
max_retries = 6

[load]
stages = [{ ramp = "1s" }, { hold = "7s" }]

[target]
errors = { "500" = 0.05, "131048" = 0.01, "timeout" = 0.03, "131026" = 0.03, "131049" = 0.1 }
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let (c, o) = (business(s, "campaign"), business(s, "otp"));
    assert_eq!(
        c.server_errors_5xx + o.server_errors_5xx,
        refused(s, 131000)
    );
    assert!(c.server_errors_5xx + o.server_errors_5xx > 0);
    assert_eq!(c.spam_131048 + o.spam_131048, refused(s, 131048));
    let cc = &pattern(s, "campaign").counters;
    assert!(cc.failed_131049 > 0, "marketing cap failures: {cc:?}");
    assert_eq!(c.status_failed, cc.failed_131026 + cc.failed_131049);
    assert_eq!(
        pattern(s, "otp").counters.failed_131049,
        0,
        "OTPs are not marketing"
    );
    // Each timed-out request was in fact accepted; its retry is accepted again, so the
    // consumer gets it twice, unless the first copy failed (a failed status) or the retry
    // was refused for good (spam).
    let timeouts = c.timeouts + o.timeouts;
    let duplicates = c.duplicates + o.duplicates;
    assert!(timeouts > 0 && duplicates > 0);
    assert!(duplicates <= timeouts, "{duplicates} > {timeouts}");
    assert!(
        timeouts - duplicates <= c.status_failed + o.status_failed + c.spam_131048 + o.spam_131048,
        "every retry after a timeout is a duplicate delivery: {c:?} {o:?}"
    );
    // Every accepted send has its `sent` or `failed` status, joined to it.
    assert_eq!(c.missing_statuses, 0, "{c:?}");
    assert_eq!(o.missing_statuses, 0, "{o:?}");
    // Reads: every delivered campaign message is read (read = 1.0) and its status joined.
    assert!(c.status_read > 0 && c.status_read <= c.status_delivered);
    assert!(c.replies > 0, "replies came back as inbound webhooks");
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_refuses_exactly_the_late_replies() {
    // A compressed day: the 24-hour window lasts 2 s. Every conversation ends with one
    // reply after the window closed, which must fail with 131047; nothing else may.
    let text = r#"[scenario]
name = "window"
seed = 8
loss_deadline = "3s"
drain = "4s"

[population.consumers]
users = 300

[population.businesses]
throughput = 1000
window = "2s"

[[pattern]]
kind = "support_conversation"
name = "support"
conversations = "6/min per user"
turns = 2
customer_gap = "300ms"
bot = 0.5
bot_think = "200ms"
agent_think = "600ms"
interactive = 0.5
pick_delay = "300ms"
late = 1.0

[load]
stages = [{ ramp = "1s" }, { hold = "9s" }]
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let b = business(s, "support");
    assert!(b.late_replies > 20, "{b:?}");
    assert_eq!(b.outside_window_131047, b.late_replies, "{b:?}");
    assert_eq!(b.window_violations, 0);
    assert_eq!(refused(s, 131047), b.late_replies);
    let c = &pattern(s, "support").counters;
    assert!(c.mark_reads > 0, "human agents mark read: {c:?}");
    assert!(
        s.metrics.contains_key("inbound"),
        "customer messages arrived as webhooks"
    );
    assert_eq!(s.accounting.lost, 0, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

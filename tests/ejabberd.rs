//! chatload against a real ejabberd server over loopback, beside the Prosody tests
//! (`tests/xmpp.rs`): accounts by in-band registration or by `ejabberdctl register`,
//! one-to-one messages with receipts, MUC rooms as groups and XEP-0198 acks, over TCP and
//! over WebSocket; what the server took counted by its own message archive; a proxy
//! dropping known deliveries; a reconnect storm resumed stream by stream; and no session
//! left behind on the server when a run ends. Each test starts its own ejabberd node (a
//! few seconds) and stops it after; the tests take turns, since an Erlang VM beside each
//! of five runs on a two-core machine would leave the runs starved of CPU.

mod common;

use chatload::report::Summary;
use common::ejabberd::Ejabberd;
use common::*;
use std::sync::atomic::Ordering::Relaxed;

/// One ejabberd test at a time (see the top).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The log-in's timeout is 15 s rather than 5: on a loaded CI machine ejabberd once left a
/// registration unanswered for 5 s. A request it never answers still fails the test, with
/// the step that went unanswered and the server's log.
fn xmpp_target(url: &str, settings: &str) -> String {
    format!(
        "[target]\nurl = \"{url}\"\nprotocol = \"xmpp\"\nconnect_timeout = \"15s\"\n\n[target.xmpp]\ndomain = \"localhost\"\n{settings}\n"
    )
}

fn pattern_sent(s: &Summary, name: &str) -> u64 {
    s.patterns
        .iter()
        .find(|p| p.name == name)
        .map_or(0, |p| p.accounting.messages_sent)
}

/// A clean run whose messages the server archived one for one (MAM: a one-to-one message
/// in its sender's and its recipient's archive, a room message in the room's), and that
/// left no session behind.
fn assert_taken_and_ended(server: &Ejabberd, s: &Summary) {
    let a = &s.accounting;
    assert_clean(s);
    assert_eq!(a.acked, a.messages_sent, "every message acked (XEP-0198)");
    let direct = pattern_sent(s, "direct_chat");
    let rooms = pattern_sent(s, "group_chat");
    assert_eq!(direct + rooms, a.messages_sent);
    assert_eq!(
        server.archived(),
        2 * direct + rooms,
        "ejabberd's archive holds what chatload says it sent ({direct} direct, {rooms} to rooms)"
    );
    // Every stream ended with a goodbye the server took: none waits for a resumption.
    assert_eq!(server.sessions(), 0, "sessions left on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_rooms_and_receipts_balance_and_match_the_servers_archive() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    let text = chat_scenario(60, 4, 8, &xmpp_target(&server.url(), "register = true"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.messages_sent > 150, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert!(
        s.metrics.get("receipt").is_some_and(|m| m.count > 0),
        "XEP-0184 receipts came back"
    );
    assert_taken_and_ended(&server, s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_direct_and_rooms_balance_and_match_the_servers_archive() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    let text = chat_scenario(
        40,
        3,
        6,
        &xmpp_target(&server.websocket_url(), "register = true"),
    );
    let r = run_text(&text, None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 80, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_taken_and_ended(&server, &r.summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_proxy_drops_are_lost_exactly() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    let proxy = common::xmpp_proxy::XmppProxy::start(server.port, 20).await;
    // Without stream management, so the server cannot hand a dropped delivery over again.
    let text = chat_scenario(
        60,
        4,
        0,
        &xmpp_target(
            &format!("xmpp://127.0.0.1:{}", proxy.port),
            "register = true\nstream_management = false",
        ),
    );
    let r = run_text(&text, None).await;
    assert_lost_exactly(
        &r.summary.accounting,
        proxy.deliveries.load(Relaxed),
        proxy.dropped.load(Relaxed),
    );
    assert_eq!(
        server.archived(),
        2 * r.summary.accounting.messages_sent,
        "the server took every message, dropped ones too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_resumes_every_cut_stream_without_loss_or_duplicates() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    let text = storm_scenario(80, &xmpp_target(&server.url(), "register = true"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let storm = &s.storms[0];
    assert!(storm.dropped >= 30, "half were cut: {storm:?}");
    assert_eq!(storm.reconnected, storm.dropped, "{storm:?}");
    // Each cut stream waited on the server for its resumption, and each was resumed.
    assert_eq!(
        server.log_lines("waiting 300 seconds for stream resumption"),
        storm.dropped,
        "{storm:?}"
    );
    assert_eq!(
        server.log_lines("Resumed session for"),
        storm.dropped,
        "{storm:?}"
    );
    assert_eq!((a.lost, a.in_flight, a.unverified), (0, 0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert_eq!(a.duplicated, 0, "{a:?}");
    assert_eq!(a.acked, a.messages_sent, "{a:?}");
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert_eq!(server.archived(), 2 * a.messages_sent);
    assert_eq!(server.sessions(), 0, "sessions left on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_made_by_ejabberdctl_are_used_as_they_are() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    // As the README shows: the server's own tool makes the accounts, chatload only logs in.
    let users = 8;
    std::thread::scope(|s| {
        for u in 0..users {
            let server = &server;
            s.spawn(move || {
                server.ctl(&[
                    "register",
                    &format!("u{u}"),
                    "localhost",
                    &format!("chatload-{u}"),
                ])
            });
        }
    });
    assert_eq!(
        server
            .ctl(&["registered_users", "localhost"])
            .lines()
            .count(),
        users as usize
    );
    let text = chat_scenario(users, 3, 0, &xmpp_target(&server.url(), "register = false"));
    let r = run_text(&text, None).await;
    assert!(
        r.summary.accounting.messages_sent > 20,
        "{:?}",
        r.summary.accounting
    );
    assert_taken_and_ended(&server, &r.summary);
    assert_eq!(
        server
            .ctl(&["registered_users", "localhost"])
            .lines()
            .count(),
        users as usize,
        "no account was made by chatload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_xmpp_scenario_runs_as_it_is() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some(server) = Ejabberd::start() else {
        return;
    };
    // scenarios/xmpp-chat.toml with --target and a shorter run: 200 users, receipts, read
    // markers, typing and 20 rooms.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/xmpp-chat.toml"
    ))
    .expect("scenarios/xmpp-chat.toml")
    .replace("duration = \"20s\"", "duration = \"8s\"")
    .replace("{ hold = \"16s\" }", "{ hold = \"4s\" }");
    let r = run_text(&text, Some(server.url())).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.users, 200);
    assert!(a.messages_sent > 100, "{a:?}");
    assert!(
        s.metrics.contains_key("read_receipt"),
        "read markers came back"
    );
    assert_taken_and_ended(&server, s);
}

#[test]
fn the_readme_shows_the_configuration_ci_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let shown = common::ejabberd::CONFIG
        .replace("{port}", "5222")
        .replace("{http_port}", "5280");
    assert!(
        readme.contains(shown.trim_end()),
        "README.md's ejabberd configuration differs from tests/common/ejabberd.rs"
    );
}

//! chatload against a real Prosody server over loopback (XMPP over TCP): accounts created
//! by in-band registration, SCRAM log-in, one-to-one messages with receipts, read markers
//! and chat states, MUC rooms as groups, XEP-0198 acks as send confirmations; messages
//! counted by the server itself; a proxy dropping known deliveries; a reconnect storm;
//! a refused log-in in one true sentence. Each test starts its own
//! Prosody (about 0.3 s) and stops it by its PID.

mod common;

use common::prosody::Prosody;
use common::*;
use std::sync::atomic::Ordering::Relaxed;

/// `[target]` for an XMPP server at `url`, with `settings` added to `[target.xmpp]`.
fn xmpp_target(url: &str, settings: &str) -> String {
    format!(
        "[target]\nurl = \"{url}\"\nprotocol = \"xmpp\"\n\n[target.xmpp]\ndomain = \"localhost\"\nregister = true\n{settings}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_rooms_receipts_and_acks_balance_and_match_the_servers_own_count() {
    let Some(server) = Prosody::start() else {
        return;
    };
    let mut text = chat_scenario(60, 4, 8, &xmpp_target(&server.url(), ""));
    text = text.replace(
        "size = { uniform = { min = 10, max = 200 } }",
        "size = { uniform = { min = 10, max = 200 } }\nread = 0.5\nread_delay = { exponential = { mean = \"300ms\" } }\ntyping = 0.5",
    );
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.target.protocol, "xmpp");
    assert!(a.messages_sent > 150, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_clean(s);
    assert_eq!(a.acked, a.messages_sent, "every message acked (XEP-0198)");
    assert_eq!(
        s.metrics["send"].count, a.acked,
        "one ack latency per message"
    );
    // The server's own count: chat and groupchat stanzas carrying chatload's ids that
    // Prosody logged as received from its clients.
    assert_eq!(
        server.messages_received(),
        a.messages_sent,
        "Prosody received what chatload says it sent"
    );
    let direct = s
        .patterns
        .iter()
        .find(|p| p.name == "direct_chat")
        .expect("direct_chat");
    let receipts = s.metrics.get("receipt").map_or(0, |m| m.count);
    assert!(
        receipts * 10 >= direct.accounting.delivered * 9,
        "XEP-0184 receipts came back for the direct messages: {receipts} of {}",
        direct.accounting.delivered
    );
    assert!(
        s.metrics.get("read_receipt").is_some_and(|m| m.count > 0),
        "read markers came back"
    );
    assert!(
        s.metrics.get("signal").is_some_and(|m| m.count > 0),
        "chat states were seen"
    );
    assert!(
        s.metrics["delivery"].p99_us < 1_000_000,
        "{:?}",
        s.metrics["delivery"]
    );
    // Stanzas are measured at their arrival, read through the stream's split half: the
    // wait on this machine is counted per read stanza.
    let read_lag = &s.metrics["read_lag"];
    assert!(
        read_lag.count >= s.metrics["delivery"].count && read_lag.max_us < 1_000_000,
        "{read_lag:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_direct_and_rooms_balance_and_match_the_servers_own_count() {
    let Some(server) = Prosody::start() else {
        return;
    };
    let text = chat_scenario(40, 3, 6, &xmpp_target(&server.websocket_url(), ""));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.messages_sent > 80, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_clean(s);
    assert_eq!(a.acked, a.messages_sent, "every message acked (XEP-0198)");
    assert_eq!(server.messages_received(), a.messages_sent);
    assert!(
        s.metrics["read_lag"].count >= s.metrics["delivery"].count,
        "measured at arrival over WebSocket too: {:?}",
        s.metrics["read_lag"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_a_proxy_drops_are_lost_exactly() {
    let Some(server) = Prosody::start() else {
        return;
    };
    let proxy = common::xmpp_proxy::XmppProxy::start(server.port, 20).await;
    // Without stream management: with it the server would keep an unacked delivery and
    // hand it over again (that is what XEP-0198 is for). No rooms: only chat messages.
    let text = chat_scenario(
        80,
        4,
        0,
        &xmpp_target(
            &format!("xmpp://127.0.0.1:{}", proxy.port),
            "stream_management = false",
        ),
    );
    let r = run_text(&text, None).await;
    assert_lost_exactly(
        &r.summary.accounting,
        proxy.deliveries.load(Relaxed),
        proxy.dropped.load(Relaxed),
    );
    assert_eq!(
        r.summary.accounting.acked, 0,
        "no stream management, no confirmations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_resumes_every_cut_stream_without_loss_or_duplicates() {
    let Some(server) = Prosody::start() else {
        return;
    };
    let r = run_text(&storm_scenario(100, &xmpp_target(&server.url(), "")), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let storm = &s.storms[0];
    assert!(storm.dropped >= 40, "half were cut: {storm:?}");
    assert_eq!(storm.reconnected, storm.dropped, "{storm:?}");
    // Every cut stream was resumed (XEP-0198), by the server's own log.
    assert_eq!(
        server.log_lines("mod_smacks resuming existing session"),
        storm.dropped,
        "{storm:?}"
    );
    assert_eq!((a.lost, a.in_flight, a.unverified), (0, 0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert_eq!(a.duplicated, 0, "{a:?}");
    assert_eq!(a.acked, a.messages_sent, "{a:?}");
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
}

/// A run against Prosody stopped with Ctrl-C after half its users left, while the rest went
/// on writing to them: Prosody keeps those messages offline (mod_offline) and hands them
/// over when the next run logs the same accounts in. They are counted as an earlier run's,
/// one for one, and the next run's own books stay clean (with ids that began at 1 in every
/// run they were that run's strays, or its deliveries when they came after it had sent a
/// message of the same number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_prosody_kept_offline_from_an_interrupted_run_is_not_taken_for_the_next() {
    let Some(server) = Prosody::start() else {
        return;
    };
    // Half the users are cut at 2 s and stay away for 20 s or more; without stream
    // management Prosody stores what comes for them offline, not in a resumable session.
    let chat = |hold_s: u32| {
        chat_scenario(
            80,
            hold_s,
            0,
            &xmpp_target(&server.url(), "stream_management = false"),
        )
    };
    let first = interrupted_run(
        &with_half_the_users_away(&chat(30)),
        std::time::Duration::from_secs(5),
    )
    .await;
    let kept = first.accounting.unverified;
    assert!(kept >= 10, "owed to the users away: {:?}", first.accounting);
    // The next run is the same chat without the storm: everyone logs in and stays.
    let second = run_text(&chat(2), None).await;
    let a = &second.summary.accounting;
    // Not all of them: what went to a user whose connection Prosody had not yet seen end
    // was lost there, not stored.
    assert!(
        a.earlier_runs >= kept / 2 && a.earlier_runs <= kept,
        "what Prosody kept of the {kept} came to the second run: {a:?}"
    );
    assert_eq!(
        (
            a.lost,
            a.in_flight,
            a.unverified,
            a.duplicated,
            a.unexpected
        ),
        (0, 0, 0, 0, 0),
        "{a:?}"
    );
    assert_eq!(a.delivered, a.sent, "{a:?}");
    // Their receipts, which Prosody kept for the first run's senders or which this run's
    // recipients sent for them, are not this run's.
    assert!(a.receipts <= a.delivered, "{a:?}");
    // Said wherever the books are shown.
    let said = format!("earlier runs' messages handed over {}", a.earlier_runs);
    let console = chatload::report::console::render(&second.summary, None);
    assert!(console.contains(&said), "{console}");
    use chatload::report::escape::{markdown, xml};
    for (file, shown) in [("summary.md", markdown(&said)), ("report.html", xml(&said))] {
        let text = std::fs::read_to_string(second.bundle_dir.join(file)).unwrap();
        assert!(text.contains(&shown), "{file}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_log_in_is_one_true_sentence() {
    let Some(server) = Prosody::start() else {
        return;
    };
    // No registration: the account does not exist, so SASL fails.
    let text = chat_scenario(10, 1, 0, &xmpp_target(&server.url(), ""))
        .replace("register = true", "register = false");
    let err = refused_run(&text).await;
    assert!(
        err.contains("refused the log-in")
            && err.contains("rejected the SASL SCRAM-SHA-1 log-in of `u")
            && err.contains("not-authorized"),
        "{err}"
    );
    assert!(!err.contains("not reachable"), "{err}");
    assert!(
        !err.contains("chatload-"),
        "no password in the sentence: {err}"
    );
}

#[test]
fn the_readme_shows_the_configuration_ci_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let shown = common::prosody::CONFIG
        .replace("{dir}", "/var/lib/chatload-prosody")
        .replace("{port}", "5222")
        .replace("{http_port}", "5280");
    assert!(
        readme.contains(shown.trim_end()),
        "README.md's Prosody configuration differs from tests/common/prosody.rs"
    );
}

/// A fake XMPP server on loopback that answers the stream header with `features` and then
/// whatever `then` writes, for every connection.
async fn hostile_server(features: &'static str, then: fn(u64, &[u8]) -> Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='h1' from='localhost' version='1.0'>{features}"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let n = s.read(&mut buf).await.unwrap_or(0);
                let auth = buf[..n].to_vec();
                // At most 64 MiB in 64 KiB pieces, then it stops by itself.
                for i in 0..1024u64 {
                    let piece = then(i, &auth);
                    if piece.is_empty() || s.write_all(&piece).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

async fn refusal(url: &str) -> String {
    let target = format!(
        "[target]\nurl = \"{url}\"\n\n[target.xmpp]\ndomain = \"localhost\"\nmechanisms = [\"SCRAM-SHA-1\"]\n"
    );
    refused_run(&chat_scenario(3, 1, 0, &target)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_server_can_neither_grow_memory_nor_burn_cpu() {
    const FEATURES: &str = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
    // A stanza that never ends: reading stops at 256 KiB and the log-in fails.
    let endless = hostile_server(FEATURES, |i, _| {
        if i == 0 {
            b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>".to_vec()
        } else {
            vec![b'A'; 64 << 10]
        }
    })
    .await;
    let e = refusal(&format!("xmpp://127.0.0.1:{endless}")).await;
    assert!(
        e.contains("a stanza longer than 262144 bytes") && e.contains("not in the XMPP protocol"),
        "{e}"
    );
    // Four billion PBKDF2 rounds asked for: refused before any is computed.
    let costly = hostile_server(FEATURES, |i, auth| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        if i > 0 {
            return Vec::new();
        }
        // The client's nonce, from its client-first message, extended as SCRAM wants.
        let text = String::from_utf8_lossy(auth);
        let inner = text
            .split_once('>')
            .and_then(|(_, r)| r.split_once('<'))
            .map_or("", |(v, _)| v);
        let decoded = String::from_utf8(b64.decode(inner).unwrap_or_default()).unwrap_or_default();
        let nonce = decoded.rsplit("r=").next().unwrap_or("");
        let first = format!("r={nonce}server,s=QUJDRA==,i=4000000000");
        format!(
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
            b64.encode(first)
        )
        .into_bytes()
    })
    .await;
    let e = refusal(&format!("xmpp://127.0.0.1:{costly}")).await;
    assert!(e.contains("PBKDF2 iterations"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_per_user_come_from_a_credentials_file() {
    let Some(server) = Prosody::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("users.csv");
    let rows: String = (0..20)
        .map(|u| format!("{u},u{u},pw-{u}-c5f1e\n"))
        .collect();
    std::fs::write(&csv, format!("user,username,password\n{rows}")).expect("write csv");
    let target = |file: &std::path::Path| {
        format!(
            "{}\n[target.auth]\ncredentials_file = \"{}\"\n",
            xmpp_target(&server.url(), "password = \"{{password}}\""),
            file.display()
        )
    };
    // Every account is registered with its own password from the file, and logs in with it.
    let r = run_text(&chat_scenario(20, 2, 0, &target(&csv)), None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 20, "{a:?}");
    assert_eq!((a.lost, a.in_flight), (0, 0), "{a:?}");
    assert_eq!(r.summary.errors_total, 0, "{:?}", r.summary.error_examples);

    // Another password for user 0 only: its account exists with the first one, so the
    // server refuses it, and the sentence names the user but not the password.
    let other = dir.path().join("other.csv");
    std::fs::write(
        &other,
        format!(
            "user,username,password\n{}",
            rows.replacen("pw-0-c5f1e", "pw-0-wrong9", 1)
        ),
    )
    .expect("write csv");
    // User 0 holds the pre-flight session, so the run stops there.
    let e = refused_run(&chat_scenario(20, 1, 0, &target(&other))).await;
    assert!(
        e.contains("not-authorized") && e.contains("`u0`") && !e.contains("pw-0-wrong9"),
        "{e}"
    );
}

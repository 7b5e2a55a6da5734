//! Every number true under faults, against the reference server with faults it counts on
//! its own side: dropped deliveries are lost exactly, deliveries held past the deadline are
//! lost and shown as late, offline queues are collected at the end (and their loss caught
//! when a server discards them), and nothing the schedule produced disappears when most
//! connections are reset.

mod common;

use common::*;

/// A slow acknowledgement path (each confirmation written 1.2 s after its send, longer than
/// the second of quiet the schedule leaves before a user's scheduled leave) while users leave
/// on the profile's schedule: a leaving user waits for the confirmations of its last sends
/// (up to 500 ms) before it closes, so none is left unacknowledged — without that wait some
/// are — and the send latency shows the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_leaving_on_schedule_wait_for_their_last_confirmations() {
    let r = run_text(
        &ramp_down_scenario("[target]\nack_delay = \"1200ms\""),
        None,
    )
    .await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.messages_sent > 300, "{a:?}");
    assert_eq!(
        (a.unacknowledged, a.acked),
        (0, a.messages_sent),
        "every send confirmed, also those just before a leave: {a:?}"
    );
    assert!(
        s.metrics["send"].min_us >= reported_floor(1_200_000),
        "the send latency holds the confirmation's delay: {:?}",
        s.metrics["send"]
    );
    assert_eq!((a.lost, a.duplicated, a.not_sent), (0, 0, 0), "{a:?}");
    assert!(a.balances(), "{a:?}");
}

/// Chat that ends with everybody leaving: every recipient is offline when the schedule
/// ends, as in `scenarios/quickstart.toml` (the case that once reported any loss as 0).
fn ramp_down_scenario(target: &str) -> String {
    format!(
        r#"[scenario]
name = "faults"
seed = 5
loss_deadline = "1s"
drain = "3s"

[population.consumers]
users = 200
contacts = {{ uniform = {{ min = 2, max = 6 }} }}
groups = 20
group_size = {{ uniform = {{ min = 3, max = 8 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "20/min per user"
messages = {{ geometric = {{ mean = 4 }} }}
gap = {{ exponential = {{ mean = "200ms" }} }}
size = 32
read = 0.0
typing = 0.0

[[pattern]]
kind = "group_chat"
rate = "30/min per group"
size = 40

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "3s" }}, {{ ramp_down = "2s" }}]

[thresholds]
"loss" = "== 0"

{target}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dropped_delivery_is_lost_even_when_recipients_have_left() {
    // On two shards: users leaving and returning on their own threads.
    let r = run_text_on_shards(&ramp_down_scenario("[target]\ndrop_every = 2"), None, 2).await;
    let s = &r.summary;
    let a = &s.accounting;
    let server = s.server.clone().expect("embedded server stats");
    assert!(server.dropped > 100, "the server dropped: {server:?}");
    assert_eq!(a.lost, server.dropped, "lost = the server's dropped: {a:?}");
    assert_eq!(a.delivered, server.delivered, "{a:?}");
    assert_eq!((a.in_flight, a.unverified, a.delivered_late), (0, 0, 0));
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
    assert!(!s.passed, "loss == 0 fails");
    let loss = &s.thresholds[0];
    assert!(
        !loss.passed && loss.observed == Some(a.lost as f64),
        "{loss:?}"
    );
    let by_second: u64 = s.series.points.iter().map(|p| p.lost).sum();
    assert_eq!(by_second, a.lost, "loss over time sums to the loss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_held_past_the_deadline_are_lost_and_shown_late() {
    // Traffic stops 3 s before the end (one conversation message each, no groups), so every
    // held delivery (2 s, twice the 1 s deadline) arrives before the run is over.
    let text = one_message_chat(
        "held",
        8,
        150,
        60,
        r#"[load]
stages = [{ ramp = "1s" }, { hold = "3s" }, { hold = "1ms", rate = 0.0 }, { hold = "3s" }]

[target]
hold_every = 10
hold = "2s"
"#,
    );
    let (s, server) = run_holding(&text, "every held delivery is lost").await;
    let a = &s.accounting;
    assert_eq!(
        a.delivered_late, server.held,
        "and each arrived late: {a:?}"
    );
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    let late = s
        .metrics
        .get("delivery_late")
        .expect("late latencies shown");
    assert_eq!(late.count, server.held);
    assert!(
        late.min_us >= reported_floor(1_990_000),
        "held 2 s, so 2 s late (to the histogram's 3 digits): {late:?}"
    );
}

/// Deliveries held past their deadline while their recipients stayed connected, then cut
/// off by a reconnect storm and resent on the new connections: a reconnect does not make
/// them on time. The deadline of a delivery owed on a connection that lasted past it ran
/// out then; only a recipient who was not connected gets its time counted from its return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_overdue_before_a_reconnect_stay_lost_after_it() {
    // Sends in the first 2 s, each held 10 s; every recipient connected by 1 s, so every
    // held one is overdue by 3 s; the storm at 4 s cuts every connection and the server
    // resends what was not acknowledged as each user comes back.
    let text = one_message_chat(
        "overdue-then-reconnect",
        9,
        200,
        120,
        r#"[[pattern]]
name = "blip"
kind = "reconnect_storm"
at = "4s"
fraction = 1.0
backoff = "fixed"
base = "200ms"

[load]
stages = [{ ramp = "1s" }, { hold = "1s" }, { hold = "1ms", rate = 0.0 }, { hold = "5s" }]

[target]
hold_every = 2
hold = "10s"
"#,
    );
    let (s, server) = run_holding(&text, "every held delivery was overdue before the storm").await;
    let a = &s.accounting;
    // Resent on the new connections, except those a later delivery's sequence number
    // acknowledged along with it (the server resumes after the last number a user saw).
    assert!(
        a.delivered_late > 0 && a.delivered_late <= server.held,
        "held ones arrived after the storm, late: {a:?}"
    );
    let late = s
        .metrics
        .get("delivery_late")
        .expect("late latencies shown");
    assert_eq!(late.count, a.delivered_late);
    assert!(
        late.min_us >= reported_floor(2_000_000),
        "sent by 2 s, back after the storm at 4 s: {late:?}"
    );
    assert_eq!((a.in_flight, a.unverified), (0, 0), "{a:?}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
}

/// One-to-one chat of one 32-byte message per conversation, `per_min` conversations a minute
/// per user, a deadline of 1 s and a `loss == 0` rule; `rest` adds patterns, load and target.
fn one_message_chat(name: &str, seed: u64, users: u32, per_min: u32, rest: &str) -> String {
    format!(
        r#"[scenario]
name = "{name}"
seed = {seed}
loss_deadline = "1s"
drain = "4s"

[population.consumers]
users = {users}
contacts = {{ uniform = {{ min = 2, max = 6 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "{per_min}/min per user"
messages = 1
size = 32
read = 0.0
typing = 0.0

{rest}
[thresholds]
"loss" = "== 0"
"#
    )
}

/// Runs a scenario against the embedded server with its hold fault on: it held some
/// deliveries, every one it held is lost (`why` says why it must be), none of them is in
/// `delivery`, and the `loss == 0` rule fails.
async fn run_holding(
    text: &str,
    why: &str,
) -> (chatload::report::Summary, chatload::server::ServerCounters) {
    let r = run_text(text, None).await;
    let s = r.summary;
    let a = &s.accounting;
    let server = s.server.clone().expect("embedded server stats");
    assert!(server.held >= 20, "the server held some: {server:?}");
    assert_eq!(a.lost, server.held, "{why}: {a:?}");
    let delivery = s.metrics["delivery"];
    assert!(
        delivery.max_us < 1_000_000,
        "no late one is folded into delivery: {delivery:?}"
    );
    assert!(!s.passed, "loss == 0 fails");
    (s, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queues_are_collected_at_the_end() {
    let r = run_text(&ramp_down_scenario(""), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let offline = s.metrics.get("delivery_offline").map_or(0, |m| m.count);
    assert!(
        offline > 0,
        "some recipients were offline when sent to: {a:?}"
    );
    assert_eq!((a.lost, a.in_flight, a.unverified), (0, 0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    let server = s.server.clone().expect("embedded server stats");
    assert!(
        server.connections > 200,
        "users owed deliveries came back to collect them: {server:?}"
    );
    assert!(s.passed, "{:?}", s.thresholds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_discards_offline_queues_loses_them_all() {
    let r = run_text(&ramp_down_scenario("[target]\noffline_queue = false"), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let server = s.server.clone().expect("embedded server stats");
    assert!(server.discarded > 0, "{server:?}");
    assert_eq!(
        a.lost, server.discarded,
        "every discarded one is lost: {a:?}"
    );
    assert_eq!((a.in_flight, a.unverified), (0, 0), "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert!(!s.passed);
}

/// The reference server in this process, and the address a front forwards to.
async fn reference_server() -> (chatload::server::RunningServer, std::net::SocketAddr) {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let backend = server
        .url()
        .trim_start_matches("ws://")
        .trim_end_matches("/v1/ws")
        .parse()
        .unwrap();
    (server, backend)
}

/// A TCP front for a server that resets all but every `pass_every`-th connection.
async fn resetting_front(backend: std::net::SocketAddr, pass_every: u64) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((mut client, _)) = listener.accept().await {
            n += 1;
            if n % pass_every != 1 {
                // Linger 0: close with a reset, as an overloaded balancer does.
                let _ = client.set_zero_linger();
                drop(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// A TCP front for a server with an accept queue of 2 that takes one connection per 20 ms,
/// as a server too busy to accept: more arrive than it queues, and Linux drops their SYNs.
async fn slow_to_accept_front(backend: std::net::SocketAddr) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(2).unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    port
}

/// Connects that wait for a SYN's retransmission (a target that cannot queue them) take a
/// second or more: the run says the kernel's count of them beside the connect times, so a
/// 1 s connect p99 is not read as the target's work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_a_full_accept_queue_held_back_are_said_with_the_kernels_count() {
    let (server, backend) = reference_server().await;
    let port = slow_to_accept_front(backend).await;
    let r = run_text(
        &chat_scenario(100, 4, 0, ""),
        Some(format!("ws://127.0.0.1:{port}/v1/ws")),
    )
    .await;
    let s = &r.summary;
    let tcp = s.tcp.expect("Linux counts TCP");
    assert!(
        tcp.syn_retransmits > 0 && tcp.listen_overflows > 0,
        "{tcp:?}"
    );
    let connect = &s.metrics["connect"];
    assert!(
        connect.max_us >= 900_000,
        "a connect waited for its SYN again: {connect:?}"
    );
    assert!(s.accounting.balances(), "{:?}", s.accounting);
    let console = chatload::report::console::render(s, None);
    assert!(
        console.contains("SYNs sent again, each such connect waiting a second or more"),
        "{console}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_scheduled_disappears_when_most_connections_are_reset() {
    let (server, backend) = reference_server().await;
    let port = resetting_front(backend, 10).await;
    let mut text = chat_scenario(100, 4, 0, "");
    text = text.replace("drain = \"3s\"", "drain = \"2s\"");
    // On two shards: a reset connection is reopened on its user's own thread.
    let r = run_text_on_shards(&text, Some(format!("ws://127.0.0.1:{port}/v1/ws")), 2).await;
    let a = &r.summary.accounting;
    let reasons = a.not_sent_reasons;
    assert!(a.messages_scheduled > 200, "{a:?}");
    assert_eq!(
        a.messages_scheduled,
        a.messages_sent + a.not_sent,
        "scheduled = sent + not sent: {a:?}"
    );
    assert!(a.not_sent > 0, "senders without a connection: {a:?}");
    assert_eq!(
        reasons.sender_never_connected
            + reasons.sender_disconnected
            + reasons.chatload_behind
            + reasons.unsendable,
        a.not_sent,
        "every message not sent has its reason: {reasons:?}"
    );
    assert!(reasons.sender_never_connected > 0, "{reasons:?}");
    assert!(a.balances(), "{a:?}");
    let console = chatload::report::console::render(&r.summary, None);
    assert!(
        console.contains("sender never connected"),
        "the console gives the reasons:\n{console}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_against_a_serve_that_drops_half_fails_with_the_loss_it_made() {
    let serve = ServeProcess::start(&["--drop-every", "2"]);
    let quickstart =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let out = bundle_dir();
    let (url, dir) = (serve.ws_url(), out.clone());
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
            .arg("run")
            .arg(quickstart)
            .args(["--target", &url, "--duration", "10s", "--quiet", "--out"])
            .arg(dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let said = serve.stop();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "{stdout}");
    let dropped: u64 = said
        .split("faults: ")
        .nth(1)
        .and_then(|f| f.split(" dropped").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("serve reports what it dropped: {said}"));
    let s: chatload::report::Summary =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let a = &s.accounting;
    assert_eq!(a.lost, dropped, "lost = what serve dropped: {a:?}\n{said}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    assert!(
        (a.lost as f64 - a.sent as f64 / 2.0).abs() <= 1.0,
        "every second delivery: {a:?}"
    );
    assert!(stdout.contains("✗ loss == 0 failed"), "{stdout}");
}

/// What a fake chatload target does once it has answered the log-in.
#[derive(Clone, Copy, PartialEq)]
enum AfterLogIn {
    /// Closes the connection at once.
    Close,
    /// Reads nothing more, keeping the connection open (and its receive buffer small, so
    /// its kernel takes little).
    StopReading,
    /// Sends one text frame of this many bytes, then closes saying why (code 1008).
    SendFrameThenClose(usize),
}

/// A WebSocket server that takes the log-in and then does `after`, every time; how many
/// connections it took.
async fn log_in_then(after: AfterLogIn) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use futures_util::{SinkExt, StreamExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if after == AfterLogIn::StopReading {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                if let Some(Ok(m)) = ws.next().await
                    && let Ok(v) =
                        serde_json::from_str::<serde_json::Value>(m.to_text().unwrap_or(""))
                {
                    let user = v["user"].as_u64().unwrap_or(0) as u32;
                    let _ = ws
                        .send(tokio_tungstenite::tungstenite::Message::text(
                            chatload::protocol::hello_ok(user, 0),
                        ))
                        .await;
                }
                match after {
                    AfterLogIn::Close => {
                        let _ = ws.close(None).await;
                    }
                    AfterLogIn::StopReading => {
                        // Until the test ends.
                        std::future::pending::<()>().await;
                        drop(ws);
                    }
                    AfterLogIn::SendFrameThenClose(len) => {
                        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
                        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
                        let _ = ws
                            .send(tokio_tungstenite::tungstenite::Message::text(
                                "x".repeat(len),
                            ))
                            .await;
                        let _ = ws
                            .close(Some(CloseFrame {
                                code: CloseCode::Policy,
                                reason: "policy says \u{1b}[2Jgo away".into(),
                            }))
                            .await;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// Reconnects back off also when every connection is taken and closed at once (a gateway
/// that closes after log-in): 100 users for 6 s make a few hundred connections, not tens of
/// thousands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_after_log_in_gets_backoff_not_a_flood() {
    let (port, accepted) = log_in_then(AfterLogIn::Close).await;
    let text = common::chat_scenario(100, 5, 0, "");
    let file = common::scenario_file(&text);
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let opts = chatload::engine::RunOptions {
        target: Some(format!("ws://127.0.0.1:{port}/v1/ws")),
        out: Some(common::bundle_dir()),
        quiet: true,
        ..Default::default()
    };
    let r = chatload::engine::run(scenario, &opts).await;
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{n} connections from 100 users; run: {:?}",
        r.as_ref()
            .map(|r| r.summary.errors.clone())
            .map_err(|e| e.to_string())
    );
    assert!(n >= 100, "every user tried: {n}");
    assert!(n < 2_000, "{n} connections from 100 users in about 6 s");
}

/// A target that stops reading does not make chatload hold ever more: each connection is
/// given up once 1 MiB waits to be written (`target_not_reading`, said in one sentence),
/// the user connects again, and the books still balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_stops_reading_is_given_up_not_buffered_without_bound() {
    let (port, accepted) = log_in_then(AfterLogIn::StopReading).await;
    // 2 users, 20 messages of 64 KiB a second each: 1.3 MB/s per connection that nothing
    // reads.
    let text = r#"[scenario]
name = "deaf-target"
seed = 5
loss_deadline = "1s"
drain = "1s"

[population.consumers]
users = 2
contacts = { uniform = { min = 1, max = 1 } }

[[pattern]]
kind = "direct_chat"
conversations = "1200/min per user"
messages = 1
size = 65536
typing = 0
read = 0
media = { text = 1 }

[load]
stages = [{ ramp = "1s" }, { hold = "10s" }]
"#;
    let r = run_text(text, Some(format!("ws://127.0.0.1:{port}/v1/ws"))).await;
    let s = &r.summary;
    let given_up = s.errors.get("target_not_reading").copied().unwrap_or(0);
    assert!(given_up >= 1, "{:?}", s.errors);
    let example = error_example(s, "target_not_reading");
    assert!(
        example.contains("the target stopped reading") && example.contains("bytes waited"),
        "{example}"
    );
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    let a = &s.accounting;
    eprintln!("{n} connections; errors {:?}; {a:?}", s.errors);
    assert!(n > 2, "the users connected again after giving up: {n}");
    assert_eq!(a.delivered, 0, "{a:?}");
    assert_eq!(a.sent, a.lost + a.delivered + a.in_flight, "{a:?}");
}

/// A target that sends a frame longer than chatload's protocol carries makes each session
/// end with one true sentence (chatload refuses it at its length, before holding it), and a
/// target that closes saying why has its code and reason shown, escape sequences escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_too_long_and_a_reasoned_close_are_said_as_they_were() {
    let long = chatload::protocol::MAX_FRAME + 1;
    let (port, _) = log_in_then(AfterLogIn::SendFrameThenClose(long)).await;
    let text = common::chat_scenario(3, 3, 0, "");
    let r = run_text(&text, Some(format!("ws://127.0.0.1:{port}/v1/ws"))).await;
    let s = &r.summary;
    let example = error_example(s, "protocol");
    assert_eq!(
        example,
        format!(
            "the target sent a frame of {long} bytes; chatload reads frames of at most {} bytes, so it gave the connection up",
            chatload::protocol::MAX_FRAME
        )
    );
    let a = &s.accounting;
    assert_eq!(a.delivered, 0, "{a:?}");
    assert_eq!(a.sent, a.lost + a.delivered + a.in_flight, "{a:?}");
    // No thresholds: the console says that this run passes with what it lost or could not
    // send (here the users are disconnected almost all the time, so mostly the latter).
    assert!(a.lost + a.not_sent > 0, "{a:?}");
    let shown = chatload::report::console::render(s, None);
    // Sends written just before a close are never confirmed: said too, when there are any.
    let unanswered = match a.unacknowledged {
        0 => String::new(),
        n => format!(", {n} sends never acknowledged"),
    };
    assert!(
        shown.contains(&format!(
            "thresholds  none, so this run passes with {} lost, 0 duplicated{unanswered} and {} not sent",
            a.lost, a.not_sent
        )),
        "{shown}"
    );

    let (port, _) = log_in_then(AfterLogIn::SendFrameThenClose(10)).await;
    let r = run_text(&text, Some(format!("ws://127.0.0.1:{port}/v1/ws"))).await;
    let example = error_example(&r.summary, "connection_closed");
    assert_eq!(
        example,
        "the target closed the connection (1008: policy says \\u{1b}[2Jgo away)"
    );
}

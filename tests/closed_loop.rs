//! The closed model over HTTP: each virtual user keeps one keep-alive connection and sends
//! its next request as soon as the last is answered. Against an independent HTTP/1.1 server
//! written here (its own framing: Content-Length and chunked answers, 503s, connections it
//! closes) that counts what it saw, and against the embedded server with the shipped
//! `bench-http` scenario; and a closed loop beside chat, whose ids are another stream.

mod common;

use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    ok: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
    /// Requests that arrived while an earlier one on the same connection was unanswered.
    pipelined: AtomicU64,
    bad: AtomicU64,
}

/// Answers every 10th request 503, every 25th with `Connection: close` (and closes), odd
/// ones chunked, the rest with Content-Length.
async fn serve(listener: tokio::net::TcpListener, seen: Arc<Seen>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        seen.connections.fetch_add(1, Relaxed);
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                if !buf.is_empty() {
                    seen.pipelined.fetch_add(1, Relaxed);
                }
                if !head.starts_with("GET /ping/") || !head.contains("\r\nHost: 127.0.0.1:") {
                    seen.bad.fetch_add(1, Relaxed);
                }
                let n = seen.requests.fetch_add(1, Relaxed) + 1;
                let close = n.is_multiple_of(25);
                let answer = if n.is_multiple_of(10) {
                    seen.refused.fetch_add(1, Relaxed);
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".to_string()
                } else if n % 2 == 1 {
                    seen.ok.fetch_add(1, Relaxed);
                    let body = format!("{{\"id\":\"m{n}\"}}");
                    let (a, b) = body.split_at(5);
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{}\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                        if close { "Connection: close\r\n" } else { "" },
                        a.len(),
                        b.len()
                    )
                } else {
                    seen.ok.fetch_add(1, Relaxed);
                    let body = format!("{{\"id\":\"m{n}\"}}");
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if close { "Connection: close\r\n" } else { "" }
                    )
                };
                if sock.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                if close && !n.is_multiple_of(10) {
                    return;
                }
            }
        });
    }
}

fn scenario(users: u32, think: &str) -> String {
    format!(
        r#"[scenario]
name = "closed"
seed = 5
duration = "2500ms"

[population.consumers]
users = {users}
contacts = 1

[[pattern]]
kind = "closed_loop"
think = "{think}"
size = 8

[load]
stages = [{{ ramp = "500ms" }}, {{ hold = "2s" }}]

[target]
protocol = "http"
url = "http://127.0.0.1:1"

[target.http]
method = "GET"
url = "/ping/{{{{user}}}}/{{{{id}}}}"
id = "/id"
timeout = "2s"
deliveries = "none"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_at_a_time_per_connection_counted_on_both_sides() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let server = tokio::spawn(serve(listener, seen.clone()));
    let users = 10u64;
    let r = run_text(
        &scenario(users as u32, "2ms"),
        Some(format!("http://127.0.0.1:{port}")),
    )
    .await;
    server.abort();
    let s = &r.summary;
    let a = &s.accounting;
    let (requests, ok, refused) = (
        seen.requests.load(Relaxed),
        seen.ok.load(Relaxed),
        seen.refused.load(Relaxed),
    );
    assert_eq!(
        seen.bad.load(Relaxed),
        0,
        "every request well-formed, to /ping/"
    );
    assert_eq!(
        seen.pipelined.load(Relaxed),
        0,
        "never two requests open on one connection"
    );
    // What was on the wire when the run stopped may be counted on one side only.
    assert!(
        a.messages_sent >= requests && a.messages_sent <= requests + users,
        "chatload sent {} and the server saw {requests}",
        a.messages_sent
    );
    assert!(
        ok.abs_diff(a.acked) <= users,
        "server 2xx {ok}, chatload acked {}",
        a.acked
    );
    let http_5xx = s.errors.get("http_5xx").copied().unwrap_or(0);
    assert!(
        refused.abs_diff(http_5xx) <= users,
        "server 503s {refused}, chatload {http_5xx}"
    );
    assert_eq!(
        s.errors_total, http_5xx,
        "only the 503s are errors: {:?}",
        s.error_examples
    );
    assert_eq!(
        s.metrics["send"].count, a.acked,
        "one latency per answered request"
    );
    // Each answer's latency ends at its arrival (the kernel's stamp), its wait apart.
    let read_lag = s.metrics.get("read_lag").map_or(0, |m| m.count);
    eprintln!("read_lag {read_lag} of {} answers", a.acked);
    assert!(
        read_lag >= a.acked * 9 / 10,
        "read_lag {read_lag} of {} answers",
        a.acked
    );
    assert_eq!(
        (a.sent, a.delivered, a.lost),
        (0, 0, 0),
        "nothing is owed to anyone"
    );
    // Each connection the server closed was opened again; nothing else was.
    let closes = (requests / 25) - (requests / 50);
    let connections = seen.connections.load(Relaxed);
    assert!(
        connections >= users && connections <= users + closes + users,
        "{connections} connections for {users} users and {closes} closes"
    );
    // A 2 ms think time caps each user near 500 requests/s over the 2.5 s it sends.
    let cap = users as f64 * 2.5 / 0.002;
    let sent = a.messages_sent as f64;
    assert!(
        sent <= cap * 1.02,
        "{sent} requests exceed the think-time bound {cap}"
    );
    assert!(
        sent >= cap * 0.25,
        "{sent} requests: the loop is far slower than its think time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_scenario_runs_against_the_embedded_server() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bench-http.toml");
    let scenario = chatload::scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let opts = chatload::engine::RunOptions {
        duration: Some(chatload::scenario::units::Micros(2_000_000)),
        out: Some(dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let r = chatload::engine::run(scenario, &opts).await.unwrap();
    let s = &r.summary;
    assert_eq!(s.users, 50);
    assert_eq!(s.peak_connected, 50);
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert!(s.passed);
    assert!(
        s.accounting.messages_sent > 2_000,
        "a closed loop on loopback answers thousands of requests in 2 s: {}",
        s.accounting.messages_sent
    );
    // The requests on the wire when the sending phase ended may go unanswered.
    assert!(
        s.accounting.messages_sent - s.accounting.acked <= 50,
        "{} sent, {} answered",
        s.accounting.messages_sent,
        s.accounting.acked
    );
    assert_eq!(s.metrics["send"].count, s.accounting.acked);
    assert!(s.metrics["send"].p50_us > 0);
}

/// A closed loop beside one-to-one chat, over chatload's own protocol to the embedded server
/// (which delivers each sender's messages in order): the loop's ids are the users' own
/// stream and the chat's the schedule's, and ids increase within a stream only. Compared
/// across the two, a chat message after a loop message from the same sender read as
/// reordered: 118 of 1,860 deliveries in this run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_beside_chat_reorders_nothing() {
    let text = r#"[scenario]
name = "mix"
seed = 5
loss_deadline = "2s"

[population.consumers]
users = 20
contacts = 1

[[pattern]]
kind = "direct_chat"
conversations = "60/min per user"
messages = 3
gap = "100ms"
size = 8

[[pattern]]
kind = "closed_loop"
think = "50ms"
size = 8

[load]
stages = [{ ramp = "500ms" }, { hold = "4s" }]
"#;
    let r = run_text(text, None).await;
    let s = &r.summary;
    let chat = &s.patterns[0].accounting;
    let closed = &s.patterns[1].accounting;
    assert!(
        chat.delivered > 100 && closed.delivered > 500,
        "{chat:?} {closed:?}"
    );
    assert_eq!(s.accounting.reordered, 0, "{:?}", s.accounting);
    assert_clean(s);
}

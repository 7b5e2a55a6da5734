//! chatload's HTTP transport: each message is one templated request. Against the reference
//! server's plain send endpoint with deliveries on the users' WebSockets, and against an
//! independent API written in the test that refuses some sends with 503 and reports
//! deliveries to chatload's webhook receiver.

mod common;

use common::chat_api::{self, ChatApi};
use common::*;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

const TOKEN_VAR: &str = "CHATLOAD_TEST_API_TOKEN";
const TOKEN: &str = "api-token-5b2e77d1";

fn env() {
    set_env_once(&[(TOKEN_VAR, TOKEN)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_with_websocket_deliveries_on_the_reference_server() {
    env();
    let target = r#"[target]
protocol = "http"

[target.http]
url = "/v1/users/{{user}}/messages"
body = '{"to":{{to}},"group":{{group}},"id":{{id}},"t":{{intended_us}},"s":{{now_us}},"body":"{{body}}"}'
id = "/id"
"#;
    // One template for both: a direct message renders "group":null, a group one "to":null.
    let r = run_text(&chat_scenario(100, 3, 10, target), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.target.protocol, "http");
    assert!(a.messages_sent > 100, "{a:?}");
    assert!(a.sent > a.messages_sent, "group messages fan out: {a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.delivered, a.sent);
    assert_eq!(
        a.acked, a.messages_sent,
        "every request answered 2xx with its id"
    );
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert_eq!(
        s.metrics["send"].count, a.acked,
        "one request latency per send"
    );
    // Deliveries come on the users' own (stamped) WebSockets and answers on the pool's
    // stamped connections: both measured to their arrival.
    let read_lag = s.metrics.get("read_lag").map_or(0, |m| m.count);
    eprintln!(
        "read_lag {read_lag} for {} deliveries and {} answers",
        a.delivered, a.acked
    );
    assert!(
        read_lag >= a.delivered + a.acked,
        "read_lag {read_lag} for {} deliveries and {} answers",
        a.delivered,
        a.acked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_group_messages_have_templates_of_their_own() {
    env();
    // The direct body has no group and the group body no recipient: were the direct
    // template used for a group message, the server would get neither and refuse it.
    let target = r#"[target]
protocol = "http"

[target.http]
url = "/v1/users/{{user}}/messages"
body = '{"to":{{to}},"id":{{id}},"t":{{intended_us}},"s":{{now_us}},"body":"{{body}}"}'
group_url = "/v1/users/{{from}}/messages"
group_body = '{"group":{{group}},"id":{{id}},"t":{{intended_us}},"s":{{now_us}},"body":"{{body}}"}'
id = "/id"
"#;
    let r = run_text(&chat_scenario(80, 3, 10, target), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let groups = s
        .patterns
        .iter()
        .find(|p| p.name == "group_chat")
        .expect("group_chat");
    assert!(groups.accounting.messages_sent > 5, "{a:?}");
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert_eq!(
        a.acked, a.messages_sent,
        "every request of both kinds taken"
    );
    assert_eq!((a.lost, a.in_flight), (0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert!(a.balances(), "{a:?}");
}

/// What a signals endpoint saw: requests by kind (the path's last segment) with their
/// bodies, and those without the bearer token.
#[derive(Default)]
struct SignalsSeen {
    by_kind: std::sync::Mutex<std::collections::HashMap<String, Vec<serde_json::Value>>>,
    unauthorized: std::sync::atomic::AtomicU64,
}

async fn signals_endpoint(seen: Arc<SignalsSeen>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    common::http_server::serve(
        listener,
        None,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            async move {
                let authorized = req
                    .headers()
                    .get("authorization")
                    .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
                let kind = req
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = common::http_server::body_bytes(req).await;
                if !authorized {
                    seen.unauthorized.fetch_add(1, Relaxed);
                }
                let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                seen.by_kind
                    .lock()
                    .unwrap()
                    .entry(kind)
                    .or_default()
                    .push(v);
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"{}"),
                )))
            }
        },
    );
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_go_as_requests_of_their_own() {
    env();
    let seen = Arc::new(SignalsSeen::default());
    let port = signals_endpoint(seen.clone()).await;
    // Sends to the reference server, deliveries on the users' WebSockets, and every
    // delivery ack, read receipt and typing indicator a request to another endpoint.
    let target = format!(
        r#"[target]
protocol = "http"

[target.auth]
token_env = "{TOKEN_VAR}"

[target.http]
url = "/v1/users/{{{{user}}}}/messages"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
body = '{{"to":{{{{to}}}},"group":{{{{group}}}},"id":{{{{id}}}},"t":{{{{intended_us}}}},"s":{{{{now_us}}}},"body":"{{{{body}}}}"}}'
id = "/id"

[target.http.signals]
delivered = {{ url = "http://127.0.0.1:{port}/v1/signals/delivered", body = '{{"by":{{{{user}}}},"to":{{{{to}}}},"id":{{{{id}}}}}}' }}
read = {{ method = "PUT", url = "http://127.0.0.1:{port}/v1/signals/read", body = '{{"by":{{{{user}}}},"to":{{{{from}}}},"id":{{{{id}}}}}}' }}
typing = {{ url = "http://127.0.0.1:{port}/v1/signals/typing", body = '{{"by":{{{{user}}}},"to":{{{{to}}}}}}' }}
"#
    );
    let text = chat_scenario(60, 3, 0, &target).replace(
        "size = { uniform = { min = 10, max = 200 } }",
        "size = { uniform = { min = 10, max = 200 } }\nread = 0.5\nread_delay = { exponential = { mean = \"200ms\" } }\ntyping = 0.5",
    );
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_clean(s);
    let sum = |f: fn(&chatload::metrics::Counters) -> u64| -> u64 {
        s.patterns.iter().map(|p| f(&p.counters)).sum()
    };
    let (reads, typing) = (sum(|c| c.reads), sum(|c| c.typing_sent));
    assert!(reads > 10 && typing > 10, "reads {reads}, typing {typing}");
    let got = seen.by_kind.lock().unwrap();
    let count = |k: &str| got.get(k).map_or(0, |v| v.len() as u64);
    assert_eq!(
        count("delivered"),
        a.delivered,
        "one delivery ack per delivery"
    );
    assert_eq!(
        count("read"),
        reads,
        "one request per read receipt chatload counts"
    );
    assert_eq!(count("typing"), typing, "one request per typing indicator");
    assert_eq!(
        seen.unauthorized.load(Relaxed),
        0,
        "the send side's headers went along"
    );
    for v in got.values().flatten() {
        assert_ne!(v["by"], v["to"], "a signal is for someone else: {v}");
    }
    assert!(
        got["read"]
            .iter()
            .all(|v| v["id"].as_u64().is_some_and(|id| id > 0)),
        "read receipts name their message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_api_with_webhook_deliveries_and_refusals() {
    env();
    let hook_port = free_port();
    let api = Arc::new(ChatApi {
        fail_every: 10,
        bearer: TOKEN.into(),
        webhook: std::sync::Mutex::new(Some(format!("http://127.0.0.1:{hook_port}/hook"))),
        redeliver_every: 7,
        ..Default::default()
    });
    let port = chat_api::start(api.clone(), None).await;
    let target = format!(
        r#"[target]
url = "http://127.0.0.1:{port}"

[target.auth]
token_env = "{TOKEN_VAR}"

[target.http]
url = "/api/send"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
body = '{{"from":{{{{user}}}},"to":{{{{to}}}},"ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
id = "/message/id"
deliveries = "webhook"
webhook = {{ listen = "127.0.0.1:{hook_port}", each = "/deliveries", recipient = "/recipient", id = "/ref", from = "/sender", transaction = "path" }}
"#
    );
    let r = run_text(&chat_scenario(80, 3, 0, &target), None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let refused = api.refused.load(Relaxed);
    assert_eq!(
        api.unauthorized.load(Relaxed),
        0,
        "the bearer token came from the environment"
    );
    assert!(refused > 5, "the API refused some sends: {refused}");
    assert_eq!(
        api.sends.load(Relaxed),
        a.messages_sent,
        "one request per send"
    );
    let p = &s.patterns[0];
    assert_eq!(
        p.errors.get("http_5xx").copied(),
        Some(refused),
        "503s counted under their pattern: {:?}",
        p.errors
    );
    assert_eq!(s.errors.get("http_5xx").copied(), Some(refused));
    assert_eq!(
        a.refused, refused,
        "a refused send is counted refused, owed nothing"
    );
    assert_eq!(a.not_sent, 0, "every scheduled send went out: {a:?}");
    assert!(a.schedule_balances(), "{a:?}");
    assert_eq!(a.acked + refused, a.messages_sent, "the rest were accepted");
    assert_eq!(a.lost, 0, "nothing accepted went missing: {a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(
        a.delivered, a.acked,
        "every accepted send came back by webhook"
    );
    // The answers, refusals too, came on the pool's lean connections: measured to their
    // arrival (webhook pushes are not stamped). Nine in ten, not all: the first segments
    // after a machine's first stamping socket may come unstamped while Linux turns stamping
    // on (CI: 174 of 175); through reqwest none are.
    let read_lag = s.metrics.get("read_lag").map_or(0, |m| m.count);
    assert!(
        read_lag * 10 >= (a.acked + refused) * 9,
        "read_lag {read_lag} for {} answers",
        a.acked + refused
    );
    let redelivered = api.redelivered.load(Relaxed);
    assert!(
        redelivered > 5,
        "the API put some batches twice: {redelivered}"
    );
    assert_eq!(
        s.target.webhook_redelivered, redelivered,
        "each batch put again under its transaction id is counted"
    );
    assert_eq!(a.duplicated, 0, "and taken once: {a:?}");
    assert_eq!(
        api.odd_answers.load(Relaxed),
        0,
        "every batch is answered 200 with {{}}"
    );
    common::assert_bundle_hides(&r.bundle_dir, TOKEN);
    // The same run again in this process, as a capacity search's next step: the API's
    // kept-alive connections to the first run's receiver ended with that run, so its
    // pushes reach this run's. This time the URL names the API by another host name than
    // the target's, so the requests go by reqwest instead of the pool's connections.
    let elsewhere = target.replace(
        r#"url = "/api/send""#,
        &format!(r#"url = "http://localhost:{port}/api/send""#),
    );
    assert_ne!(elsewhere, target);
    let again = run_text(&chat_scenario(80, 3, 0, &elsewhere), None).await;
    let a2 = &again.summary.accounting;
    assert!(a2.acked > 50, "{a2:?}");
    assert_eq!((a2.lost, a2.in_flight), (0, 0), "{a2:?}");
    assert_eq!(a2.delivered, a2.acked, "{a2:?}");
    assert_eq!(
        again.summary.metrics.get("read_lag").map_or(0, |m| m.count),
        0,
        "reqwest's answers are measured at the read"
    );
    let console = chatload::report::console::render(s, None);
    assert!(!console.contains(TOKEN), "the console shows the token");
    let md = std::fs::read_to_string(r.bundle_dir.join("summary.md")).unwrap();
    assert!(
        md.contains(&format!("in direct_chat: http_5xx {refused}")),
        "the Markdown names the pattern's errors:\n{md}"
    );
}

/// A hostile API: every answer promises a gigabyte (with a Content-Length, or chunked, or
/// running until close, by turns) and pours it out as fast as loopback takes it.
async fn flooding_api() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok((mut s, _)) = listener.accept().await {
            n += 1;
            let framing = n % 3;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 << 10];
                let _ = s.read(&mut buf).await;
                let head: &[u8] = match framing {
                    0 => b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n",
                    1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    _ => b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                };
                if s.write_all(head).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 1 << 20];
                for _ in 0..1024 {
                    if framing == 1 && s.write_all(b"100000\r\n").await.is_err() {
                        return;
                    }
                    if s.write_all(&block).await.is_err() {
                        return;
                    }
                    if framing == 1 && s.write_all(b"\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The peak resident memory of the largest child this test process has waited for, in KiB.
fn children_peak_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    }
}

/// Answers of a gigabyte each, to the open model (a shared client pool) and to the closed
/// loop (a connection per user): each is refused once it passes `max_answer`, as an
/// `answer_too_long` error naming the key and the bytes left unread, and chatload's memory
/// stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_any_size_cannot_grow_memory() {
    env();
    let port = flooding_api().await;
    let open = include_str!("data/flood-open.toml");
    let closed = r#"[scenario]
name = "flood-closed"
seed = 1

[population.consumers]
users = 30
online = 1.0
contacts = 1

[[pattern]]
kind = "closed_loop"
think = "0s"

[load]
stages = [{ ramp = "500ms" }, { hold = "3s" }]

[target]
protocol = "http"

[target.http]
method = "GET"
url = "/x"
timeout = "5s"
deliveries = "none"
"#;
    for text in [open, closed] {
        let file = scenario_file(text);
        let out_dir = bundle_dir();
        let bin = env!("CARGO_BIN_EXE_chatload");
        let target = format!("http://127.0.0.1:{port}");
        let (path, out_path) = (file.path.clone(), out_dir.clone());
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .arg("run")
                .arg(&path)
                .args(["--target", &target, "-q", "--out"])
                .arg(&out_path)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.join("summary.json"))
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr))),
        )
        .unwrap();
        let too_long = summary["errors"]["answer_too_long"].as_u64().unwrap_or(0);
        assert!(too_long > 10, "refused answers: {}", summary["errors"]);
        assert_eq!(
            summary["errors"]["protocol"].as_u64().unwrap_or(0),
            0,
            "{}",
            summary["errors"]
        );
        let example = summary["error_examples"]["answer_too_long"]
            .as_str()
            .unwrap_or("");
        assert!(
            example.contains("max_answer (65536 bytes)") && example.contains("not read"),
            "{example}"
        );
        let peak_mib = children_peak_rss_kib() / 1024;
        eprintln!(
            "{}: {too_long} answers refused, peak RSS {peak_mib} MiB",
            summary["scenario"]
        );
        assert!(peak_mib < 150, "chatload grew to {peak_mib} MiB");
    }
}

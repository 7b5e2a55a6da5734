//! TLS on every transport with a self-signed certificate generated in the test: wss:// to
//! chatload's reference server behind a TLS front, https:// to an HTTP API, mqtts:// to
//! mosquitto. Trust comes from `ca_file`; without it the handshake fails with one clear
//! error of kind `tls`.

mod common;

use common::chat_api::{self, ChatApi};
use common::mosquitto::{Broker, Options};
use common::tls::self_signed;
use common::*;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

/// A TLS front for a plain TCP server: what a load balancer in front of a chat server does.
async fn tls_front(backend: std::net::SocketAddr, cert: Arc<rustls::ServerConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(cert);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

fn ca_line(path: &std::path::Path) -> String {
    format!("ca_file = \"{}\"\n", path.display())
}

fn env() {
    set_env_once(&[("CHATLOAD_TLS_TEST_TOKEN", "tls-token-31337abc")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_to_the_reference_server_behind_tls() {
    env();
    let cert = self_signed();
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let port = tls_front(server.addr, cert.server.clone()).await;
    let target = format!(
        "[target]\nurl = \"wss://127.0.0.1:{port}/v1/ws\"\n{}",
        ca_line(&cert.cert_pem)
    );
    let r = run_text(&chat_scenario(60, 2, 6, &target), None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 40, "{a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.acked, a.messages_sent);
    assert_eq!(r.summary.errors_total, 0, "{:?}", r.summary.error_examples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_stops_the_run_with_a_tls_error() {
    env();
    let cert = self_signed();
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let port = tls_front(server.addr, cert.server.clone()).await;
    let text = chat_scenario(
        5,
        1,
        0,
        &format!("[target]\nurl = \"wss://127.0.0.1:{port}/v1/ws\"\n"),
    );
    let file = scenario_file(&text);
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let opts = chatload::engine::RunOptions {
        out: Some(file.dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let e = match chatload::engine::run(scenario, &opts).await {
        Ok(_) => panic!("an untrusted certificate must stop the run"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("TLS handshake failed")
            && e.contains("UnknownIssuer")
            && e.contains("--ca-file"),
        "the sentence names the TLS failure and the fix: {e}"
    );
}

/// The `[target]` of the test HTTP API (`chat_api`) over https on `port`, trusting `ca`:
/// each send's `to` rendered from `to`, then `receive`'s lines under `[target.http]`.
fn chat_api_target(port: u16, ca: &std::path::Path, to: &str, receive: &str) -> String {
    format!(
        r#"[target]
url = "https://127.0.0.1:{port}"
{}
[target.auth]
token_env = "CHATLOAD_TLS_TEST_TOKEN"

[target.http]
url = "/api/send"
headers = {{ Authorization = "Bearer {{{{token}}}}" }}
body = '{{"from":{{{{user}}}},"to":{to},"ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
{receive}
"#,
        ca_line(ca)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_an_http_api() {
    env();
    let cert = self_signed();
    let hook_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = Arc::new(ChatApi {
        bearer: "tls-token-31337abc".into(),
        webhook: std::sync::Mutex::new(Some(format!("http://127.0.0.1:{hook_port}/"))),
        ..Default::default()
    });
    let port = chat_api::start(api.clone(), Some(cert.server.clone())).await;
    let target = chat_api_target(
        port,
        &cert.cert_pem,
        "{{to}}",
        &format!(
            r#"deliveries = "webhook"
webhook = {{ listen = "127.0.0.1:{hook_port}", each = "/deliveries", recipient = "/recipient", id = "/ref" }}"#
        ),
    );
    let r = run_text(&chat_scenario(40, 2, 0, &target), None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 20, "{a:?}");
    assert_eq!(a.acked, a.messages_sent, "{:?}", r.summary.error_examples);
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
}

/// A closed loop's own keep-alive connections over TLS: every request answered, and each
/// answer's latency ended at its arrival (the stamp of the TCP segment under the TLS record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_over_https() {
    env();
    let cert = self_signed();
    let api = Arc::new(ChatApi {
        bearer: "tls-token-31337abc".into(),
        ..Default::default()
    });
    let port = chat_api::start(api.clone(), Some(cert.server.clone())).await;
    let scenario = format!(
        r#"[scenario]
name = "closed-https"
seed = 3

[population.consumers]
users = 8
online = 1.0
contacts = 1

[[pattern]]
kind = "closed_loop"
think = "5ms"

[load]
stages = [{{ ramp = "300ms" }}, {{ hold = "1500ms" }}]

{}"#,
        chat_api_target(
            port,
            &cert.cert_pem,
            "0",
            "timeout = \"5s\"\ndeliveries = \"none\""
        )
    );
    let r = run_text(&scenario, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.acked > 100, "{a:?} {:?}", s.error_examples);
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    // A request on the wire when the run stopped may be counted by the API only.
    let sends = api.sends.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        a.acked <= sends && sends <= a.acked + 8,
        "API {sends}, chatload {a:?}"
    );
    let read_lag = s.metrics.get("read_lag").map_or(0, |m| m.count);
    assert!(
        read_lag >= a.acked * 9 / 10,
        "read_lag {read_lag} of {} answers",
        a.acked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_to_mosquitto() {
    env();
    let cert = self_signed();
    let extra = format!(
        "certfile {}\nkeyfile {}\n",
        cert.cert_pem.display(),
        cert.key_pem.display()
    );
    let Some(broker) = Broker::start(Options { extra }) else {
        return;
    };
    let target = format!(
        "[target]\nurl = \"mqtts://127.0.0.1:{}\"\n{}",
        broker.port,
        ca_line(&cert.cert_pem)
    );
    let r = run_text(&chat_scenario(60, 2, 6, &target), None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 40, "{a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.acked, a.messages_sent);
    assert_eq!(r.summary.errors_total, 0, "{:?}", r.summary.error_examples);
}

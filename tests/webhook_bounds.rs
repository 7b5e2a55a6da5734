//! chatload's webhook receiver under a hostile sender, in a binary of its own: it fills the
//! receiver's 64 MiB and 1,024 connections, which would take CPU and descriptors from the
//! timing-sensitive tests beside it.

mod common;

use common::chat_api::{self, ChatApi};
use common::*;
use std::sync::Arc;

/// The webhook receiver under a hostile sender, beside a run whose deliveries come to it: a
/// body past 4 MiB is answered 413; bodies being read hold at most 64 MiB together, past
/// which a request is answered 503 with `Retry-After`; connections past 1,024 open at once
/// are closed on arrival. Each refusal is counted under `http`, and the books balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receiver_bounds_what_a_sender_makes_it_hold() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let hook_port = free_port();
    let api = Arc::new(ChatApi {
        webhook: std::sync::Mutex::new(Some(format!("http://127.0.0.1:{hook_port}/hook"))),
        bearer: "t".into(),
        ..Default::default()
    });
    let port = chat_api::start(api.clone(), None).await;
    let target = format!(
        r#"[target]
url = "http://127.0.0.1:{port}"

[target.http]
url = "/api/send"
headers = {{ Authorization = "Bearer t" }}
body = '{{"from":{{{{user}}}},"to":{{{{to}}}},"ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
id = "/message/id"
deliveries = "webhook"
webhook = {{ listen = "127.0.0.1:{hook_port}", each = "/deliveries", recipient = "/recipient", id = "/ref", from = "/sender" }}
"#
    );
    let hostile = tokio::spawn(async move {
        let addr = ("127.0.0.1", hook_port);
        let started = std::time::Instant::now();
        while TcpStream::connect(addr).await.is_err() {
            assert!(started.elapsed() < std::time::Duration::from_secs(20));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let status = async |s: &mut TcpStream| -> String {
            let mut got = vec![0u8; 512];
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut got))
                .await
                .map_or(0, |r| r.unwrap_or(0));
            String::from_utf8_lossy(&got[..n]).into_owned()
        };
        let post = |len: usize| {
            format!(
                "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
            )
        };
        // A body of 5 MiB: refused once 4 MiB came in.
        let mut long = TcpStream::connect(addr).await.unwrap();
        long.write_all(post(5 << 20).as_bytes()).await.unwrap();
        let _ = long.write_all(&vec![b' '; 5 << 20]).await;
        let too_long = status(&mut long).await;
        drop(long);
        // 16 bodies of 4 MiB less a byte, never finished: 64 MiB held, less 16 bytes.
        let mut holding = Vec::new();
        for _ in 0..16 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(post(4 << 20).as_bytes()).await.unwrap();
            s.write_all(&vec![b' '; (4 << 20) - 1]).await.unwrap();
            holding.push(s);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        let body = format!("{{\"deliveries\":[],\"pad\":\"{}\"}}", "x".repeat(100));
        busy.write_all(format!("{}{body}", post(body.len())).as_bytes())
            .await
            .unwrap();
        let busy_status = status(&mut busy).await;
        // Idle connections past 1,024 open at once are closed as they arrive.
        let mut idle = Vec::new();
        for _ in 0..1_100 {
            if let Ok(s) = TcpStream::connect(addr).await {
                idle.push(s);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let mut closed = 0u64;
        for s in &mut idle {
            let mut b = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(std::time::Duration::from_millis(2), s.read(&mut b)).await
            {
                closed += 1;
            }
        }
        (too_long, busy_status, closed, std::time::Instant::now())
    });
    // The receiver closes every connection when the run ends: the sender's count of closed
    // connections means "closed on arrival" only if it was made while the run still held
    // (1 s ramp, 10 s hold; the sender needs a few seconds on a loaded machine).
    let started = std::time::Instant::now();
    let r = run_text(&chat_scenario(20, 10, 0, &target), None).await;
    let (too_long, busy, closed, counted_at) = hostile.await.unwrap();
    assert!(
        counted_at < started + std::time::Duration::from_secs(11),
        "the sender counted closed connections {:?} after the run started, past its hold",
        counted_at - started
    );
    assert!(too_long.starts_with("HTTP/1.1 413"), "{too_long}");
    assert!(
        busy.starts_with("HTTP/1.1 503") && busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );
    // Open beside them: the 16 holding bodies and the one answered 503 (kept alive), and
    // any connection of the API's own.
    assert!(
        (1_100 + 17 - 1_024..=1_100).contains(&(closed as usize)),
        "closed on arrival: {closed}"
    );
    let s = &r.summary;
    let http = s.errors.get("http").copied().unwrap_or(0);
    assert!(http >= closed + 2, "{:?}", s.errors);
    // The run's sends are accepted; what the API pushed while the sender held the
    // receiver's 64 MiB was answered 503 and, this API not retrying, is lost: counted.
    assert_eq!(
        api.unauthorized.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(s.accounting.acked > 50, "{:?}", s.accounting);
    assert!(s.accounting.balances(), "{:?}", s.accounting);
}

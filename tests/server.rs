//! The reference server on its own, spoken to frame by frame over a real socket: acks,
//! delivery with per-user sequence numbers, receipts, group fan-out, the offline queue and
//! resume after a reconnect.

mod common;

use chatload::protocol::{self, Recipient};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn login(url: &str, user: u32, last_seq: u64) -> Ws {
    login_in_run(url, user, last_seq, 1).await
}

async fn login_in_run(url: &str, user: u32, last_seq: u64, run: u64) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws.send(Message::text(protocol::hello(user, last_seq, run)))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await["op"], "hello_ok");
    ws
}

async fn next(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn nothing_within(ws: &mut Ws, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), ws.next())
        .await
        .is_err()
}

#[tokio::test]
async fn messages_are_acked_delivered_in_sequence_and_receipted() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let mut a = login(&url, 1, 0).await;
    let mut b = login(&url, 2, 0).await;
    for id in [10u64, 11, 12] {
        a.send(Message::text(protocol::send(
            id,
            Recipient::User(2),
            100 + id,
            200 + id,
            "hi",
        )))
        .await
        .unwrap();
        let ack = next(&mut a).await;
        assert_eq!(
            (ack["op"].as_str(), ack["id"].as_u64(), ack["t"].as_u64()),
            (Some("sent"), Some(id), Some(100 + id))
        );
    }
    for (i, id) in [10u64, 11, 12].into_iter().enumerate() {
        let m = next(&mut b).await;
        assert_eq!(m["op"], "msg");
        assert_eq!(
            (m["id"].as_u64(), m["seq"].as_u64(), m["from"].as_u64()),
            (Some(id), Some(i as u64 + 1), Some(1))
        );
        assert_eq!(
            (m["t"].as_u64(), m["s"].as_u64(), m["body"].as_str()),
            (Some(100 + id), Some(200 + id), Some("hi"))
        );
        b.send(Message::text(protocol::ack(
            i as u64 + 1,
            id,
            1,
            100 + id,
            200 + id,
            0,
        )))
        .await
        .unwrap();
        let r = next(&mut a).await;
        assert_eq!(
            (r["op"].as_str(), r["id"].as_u64(), r["by"].as_u64()),
            (Some("receipt"), Some(id), Some(2))
        );
    }
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.delivered), (3, 3));
    server.shutdown().await;
}

#[tokio::test]
async fn groups_fan_out_to_every_other_member() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let mut a = login(&url, 1, 0).await;
    a.send(Message::text(protocol::group(7, &[1, 2, 3])))
        .await
        .unwrap();
    assert_eq!(next(&mut a).await["op"], "group_ok");
    let mut b = login(&url, 2, 0).await;
    let mut c = login(&url, 3, 0).await;
    a.send(Message::text(protocol::send(
        5,
        Recipient::Group(7),
        1,
        2,
        "all",
    )))
    .await
    .unwrap();
    assert_eq!(next(&mut a).await["op"], "sent");
    for ws in [&mut b, &mut c] {
        let m = next(ws).await;
        assert_eq!(
            (m["op"].as_str(), m["group"].as_u64(), m["id"].as_u64()),
            (Some("msg"), Some(7), Some(5))
        );
    }
    assert!(
        nothing_within(&mut a, 200).await,
        "the sender does not get its own group message"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_offline_user_gets_its_queue_on_login_and_resume_skips_what_it_had() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let mut a = login(&url, 1, 0).await;
    for id in 1..=4u64 {
        a.send(Message::text(protocol::send(
            id,
            Recipient::User(9),
            0,
            0,
            "x",
        )))
        .await
        .unwrap();
        assert_eq!(next(&mut a).await["op"], "sent");
    }
    // User 9 was never connected: everything waits for it.
    let mut b = login(&url, 9, 0).await;
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let m = next(&mut b).await;
        seqs.push(m["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    // It acknowledges the first two, then drops the connection.
    for seq in [1u64, 2] {
        b.send(Message::text(protocol::ack(seq, seq, 1, 0, 0, 0)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // It saw up to 3 before the drop: only 4 comes again.
    let mut b = login(&url, 9, 3).await;
    let m = next(&mut b).await;
    assert_eq!((m["seq"].as_u64(), m["id"].as_u64()), (Some(4), Some(4)));
    assert!(nothing_within(&mut b, 200).await);
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_gets_an_error_frame_not_a_crash() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    ws.send(Message::text("{not json")).await.unwrap();
    let e = next(&mut ws).await;
    assert_eq!(
        (e["op"].as_str(), e["code"].as_u64()),
        (Some("error"), Some(400))
    );
    ws.send(Message::text(protocol::send(
        1,
        Recipient::User(2),
        0,
        0,
        "x",
    )))
    .await
    .unwrap();
    assert_eq!(
        next(&mut ws).await["code"],
        401,
        "sending before hello is refused"
    );
    let mut ok = login(&url, 5, 0).await;
    ok.send(Message::text(protocol::PING)).await.unwrap();
    assert_eq!(next(&mut ok).await["op"], "pong");
    assert_eq!(server.stats().malformed, 1);
    server.shutdown().await;
}

#[tokio::test]
async fn an_upgrade_request_rfc_6455_refuses_is_answered_with_the_reason_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(Duration::from_secs(10), async {
        let server = chatload::server::start("127.0.0.1:0", Default::default())
            .await
            .unwrap();
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        // No Sec-WebSocket-Key.
        tcp.write_all(
            b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\nno single `Sec-WebSocket-Key` header\n"),
            "{answer}"
        );
        // Counted once the connection's task has seen the refusal through.
        while server.stats().malformed == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.stats().malformed, 1);
        assert_eq!(server.stats().connections, 0, "no WebSocket was opened");
        // A well-formed upgrade beside it still opens.
        let mut ok = login(&server.url(), 3, 0).await;
        ok.send(Message::text(protocol::PING)).await.unwrap();
        assert_eq!(next(&mut ok).await["op"], "pong");
        server.shutdown().await;
    })
    .await
    .expect("within 10 s");
}

#[tokio::test]
async fn a_webhook_registration_with_a_bad_segment_is_refused_with_the_reason() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    // The business API shares the WebSocket's port.
    let ws = reqwest::Url::parse(&server.url()).unwrap();
    let base = format!("http://{}:{}", ws.host_str().unwrap(), ws.port().unwrap());
    let http = reqwest::Client::new();
    let put = |body: serde_json::Value| http.put(format!("{base}/v1/0/webhook")).json(&body).send();
    let url = "http://127.0.0.1:9/webhook";
    for (segment, why) in [
        (serde_json::json!({"index": 1}), "needs `index` and `count`"),
        (serde_json::json!({"index": 2, "count": 2}), "index < count"),
        (serde_json::json!({"index": 0, "count": 0}), "index < count"),
    ] {
        let r = put(serde_json::json!({"url": url, "segment": segment}))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{segment}");
        let body: serde_json::Value = r.json().await.unwrap();
        let details = body["error"]["error_data"]["details"].as_str().unwrap();
        assert!(details.contains(why), "{segment}: {details}");
    }
    let r = put(serde_json::json!({"url": url, "segment": {"index": 1, "count": 2}}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_new_run_starts_afresh_on_a_server_that_outlives_the_last() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let send = |id: u64| Message::text(protocol::send(id, Recipient::User(2), 1, 2, "hi"));
    // Run 1: user 1 sends ids 10 and 11 to user 2, who never connects in that run.
    let mut a = login_in_run(&url, 1, 0, 1).await;
    for id in [10, 11] {
        a.send(send(id)).await.unwrap();
        assert_eq!(next(&mut a).await["op"], "sent");
    }
    drop(a);
    // Run 2 (a capacity search's next step, say) uses the same ids again.
    let mut a = login_in_run(&url, 1, 0, 2).await;
    let mut b = login_in_run(&url, 2, 0, 2).await;
    a.send(send(10)).await.unwrap();
    assert_eq!(next(&mut a).await["op"], "sent");
    let m = next(&mut b).await;
    assert_eq!(
        (m["op"].as_str(), m["id"].as_u64()),
        (Some("msg"), Some(10)),
        "run 2's id 10 is delivered, not taken for a retransmission, and run 1's queue is not handed over"
    );
    assert!(
        nothing_within(&mut b, 300).await,
        "nothing else: run 1's leftovers are gone"
    );
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.retransmitted), (3, 0));
    server.shutdown().await;
}

/// The peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `chatload serve` under hostile clients, with small bounds: a group past its size is
/// refused, sends to users who never connect stop being kept at the byte budget, each
/// user's queue stops at its cap, connections past the limit are closed on arrival and
/// half-sent headers are cut at the header timeout, after which `/healthz` answers again.
/// Every refusal is counted; memory stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bounds_what_hostile_clients_can_make_it_hold() {
    let server = common::serve::ServeProcess::start(&[
        "--max-connections",
        "40",
        "--header-timeout",
        "1s",
        "--max-group-size",
        "100",
        "--queue-per-user",
        "5",
        "--queue-bytes",
        "64KiB",
    ]);
    let url = server.ws_url();
    let pid = server.pid();
    // A group definition of 300,000 members is a frame of 2.0 MB, longer than the server
    // reads (chatload's largest body and its envelope): refused at its length, with the
    // reason in the close.
    let mut big = login(&url, 2, 0).await;
    let members: Vec<u32> = (0..300_000).collect();
    let frame = protocol::group(9, &members);
    let _ = big.send(Message::text(frame.clone())).await;
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match big.next().await {
                Some(Ok(Message::Close(c))) => break c,
                Some(Ok(_)) => continue,
                _ => break None,
            }
        }
    })
    .await
    .expect("the server closes within 10 s");
    let close = close.expect("the server says why it closes");
    assert_eq!(u16::from(close.code), 1009);
    assert_eq!(
        close.reason.as_str(),
        format!(
            "a frame of {} bytes; this server reads at most {}",
            frame.len(),
            protocol::MAX_FRAME
        )
    );
    // One past --max-group-size fits in a frame and is refused as a group, with its reason.
    let mut a = login(&url, 1, 0).await;
    let members: Vec<u32> = (0..101).collect();
    a.send(Message::text(protocol::group(9, &members)))
        .await
        .unwrap();
    let refusal = next(&mut a).await;
    assert_eq!(refusal["op"], "error", "{refusal}");
    assert!(
        refusal.to_string().contains("--max-group-size 100"),
        "{refusal}"
    );
    // 1 KB messages: 20 to one user who never connects, then one each to 300 others.
    let body = "x".repeat(1000);
    for i in 0..320u64 {
        let to = if i < 20 { 5000 } else { 1000 + i as u32 };
        a.send(Message::text(protocol::send(
            i + 1,
            Recipient::User(to),
            1,
            2,
            &body,
        )))
        .await
        .unwrap();
        assert_eq!(next(&mut a).await["op"], "sent");
    }
    // Connections that never finish their header (two of them a WebSocket upgrade): 39 fit
    // beside `a`, the rest are closed.
    let mut half = Vec::new();
    for i in 0..62 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await {
            use tokio::io::AsyncWriteExt;
            let head: &[u8] = if i < 2 {
                b"GET /v1/ws HTTP/1.1\r\nUpgr"
            } else {
                b"GET /healthz HTTP/1.1\r\nHo"
            };
            let _ = s.write_all(head).await;
            half.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let health = reqwest::get(format!("http://127.0.0.1:{}/healthz", server.port))
        .await
        .expect("healthz answers once the half-sent headers timed out");
    assert!(health.status().is_success());
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert_eq!(count("chatload_server_groups_refused_total"), 1);
    assert_eq!(
        count("chatload_server_malformed_total"),
        1,
        "the frame too long"
    );
    assert_eq!(
        count("chatload_server_queue_overflowed_total"),
        15,
        "one user's queue keeps 5"
    );
    let refused = count("chatload_server_connections_refused_total");
    assert!(refused >= 20, "{metrics}");
    assert_eq!(
        count("chatload_server_headers_timed_out_total"),
        62 - refused,
        "every half-sent header that got in was cut and counted: {metrics}"
    );
    // 64 KiB hold about 60 of the ~1.1 KB deliveries; the rest are counted, not kept.
    let full = count("chatload_server_queue_full_total");
    assert!((200..=290).contains(&full), "{metrics}");
    let peak_mib = peak_rss_kib(pid) / 1024;
    drop(half);
    drop(a);
    let said = server.stop();
    assert!(
        said.contains("bounds:")
            && said.contains("1 groups refused at --max-group-size")
            && said.contains(&format!(
                "{} connections closed at --header-timeout",
                62 - refused
            )),
        "{said}"
    );
    eprintln!("serve peak RSS {peak_mib} MiB; {said}");
    assert!(peak_mib < 100, "serve grew to {peak_mib} MiB");
}

/// A second log-in as a connected user replaces the first, which is told so and closed; the
/// deliveries go to the new connection, and the server counts the replacement.
#[tokio::test]
async fn a_second_log_in_replaces_the_first_openly() {
    let server = chatload::server::start("127.0.0.1:0", Default::default())
        .await
        .unwrap();
    let url = server.url();
    let mut first = login(&url, 4, 0).await;
    let mut second = login(&url, 4, 0).await;
    let bye = next(&mut first).await;
    assert_eq!(
        (bye["op"].as_str(), bye["code"].as_u64()),
        (Some("error"), Some(409)),
        "{bye}"
    );
    assert!(
        bye.to_string()
            .contains("another connection logged in as user 4")
    );
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match first.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the replaced connection is closed");
    let mut sender = login(&url, 5, 0).await;
    sender
        .send(Message::text(protocol::send(
            1,
            Recipient::User(4),
            1,
            2,
            "hi",
        )))
        .await
        .unwrap();
    assert_eq!(next(&mut sender).await["op"], "sent");
    assert_eq!(next(&mut second).await["op"], "msg");
    assert_eq!(server.stats().replaced, 1);
    server.shutdown().await;
}

/// A client that sends but never reads is cut once more than `--max-write-queue` waits for
/// it, and counted; nothing it was owed is lost: its next connection gets every delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_at_the_write_queue_bound_and_loses_nothing() {
    let server = common::serve::ServeProcess::start(&["--max-write-queue", "1MiB"]);
    let url = server.ws_url();
    // User 2 logs in and then never reads again; 400 deliveries of 60 KB (24 MB) are more
    // than loopback's socket buffers on both ends take.
    let deaf = login(&url, 2, 0).await;
    let mut sender = login(&url, 3, 0).await;
    let body = "y".repeat(60_000);
    const SENT: u64 = 400;
    for id in 1..=SENT {
        sender
            .send(Message::text(protocol::send(
                id,
                Recipient::User(2),
                1,
                2,
                &body,
            )))
            .await
            .unwrap();
        assert_eq!(next(&mut sender).await["op"], "sent");
    }
    let metrics_url = format!("http://127.0.0.1:{}/metrics", server.port);
    let cut = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let text = reqwest::get(&metrics_url)
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("chatload_server_slow_readers_total "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no slow_readers line in {text}"));
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the deaf connection is cut within 10 s");
    assert_eq!(cut, 1);
    drop(deaf);
    // Its next connection resumes from nothing handled and gets all of it, in order.
    let mut back = login(&url, 2, 0).await;
    for seq in 1..=SENT {
        let m = next(&mut back).await;
        assert_eq!(
            (m["op"].as_str(), m["seq"].as_u64()),
            (Some("msg"), Some(seq))
        );
    }
    drop((back, sender));
    let said = server.stop();
    assert!(
        said.contains("1 connections cut at --max-write-queue (not reading)"),
        "{said}"
    );
}

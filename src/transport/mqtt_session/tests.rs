//! The session against a broker made here on loopback, answering exactly as each test needs:
//! acknowledgements paired by packet id, the QoS 1 window and its bound, keep-alive, and
//! what a goodbye acknowledges.

use super::super::authority::Authority;
use super::super::mqtt::MqttSetup;
use super::super::mqtt_wire::packet_len;
use super::*;
use crate::scenario::target::MqttVersion;
use crate::scenario::template::Template;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

fn setup(port: u16, version: MqttVersion, keep_alive_s: u64) -> MqttSetup {
    let template = |t: &str| Template::parse(t).expect("a valid template");
    MqttSetup {
        target: Arc::new(MqttTarget {
            version,
            qos: 1,
            user_topic: template("u/{user}"),
            group_topic: template("g/{group}"),
            client_id: template("c{user}"),
            keep_alive: crate::scenario::units::Micros(keep_alive_s * 1_000_000),
            clean_session: true,
            receipts: true,
        }),
        broker: Authority {
            host: "127.0.0.1".into(),
            port,
        },
        address: format!("127.0.0.1:{port}"),
        tls: None,
        username: None,
        password: None,
        per_user: None,
        sources: super::super::source::SourcePool::new(vec![
            "127.0.0.2".parse().expect("an address"),
        ]),
    }
}

/// The broker's end of one connection.
struct Broker {
    tcp: TcpStream,
    buf: BytesMut,
}

impl Broker {
    /// The next whole packet from the client; `None` at its end.
    async fn packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Ok(Some(n)) = packet_len(&self.buf, 1 << 20) {
                return Some(self.buf.split_to(n).to_vec());
            }
            if self.tcp.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.expect("the client reads");
    }

    /// Takes the CONNECT with `connack`, and sends `before_suback` ahead of the SUBACK.
    async fn log_in(&mut self, connack: &[u8], before_suback: &[u8]) {
        let connect = self.packet().await.expect("a CONNECT");
        assert_eq!(connect[0] >> 4, 1);
        self.send(connack).await;
        let subscribe = self.packet().await.expect("a SUBSCRIBE");
        assert_eq!(subscribe[0], 0x82);
        self.send(before_suback).await;
        // MQTT 5 (protocol level 5, after the fixed header and "MQTT") has a property
        // block, empty here, before the granted QoS.
        if connect[8] == 5 {
            self.send(&[0x90, 4, subscribe[2], subscribe[3], 0, 1])
                .await;
        } else {
            self.send(&[0x90, 3, subscribe[2], subscribe[3], 1]).await;
        }
    }
}

const CONNACK_311: [u8; 4] = [0x20, 2, 0, 0];

/// A broker on a free port, and the session `user` opens to it.
async fn pair(version: MqttVersion, keep_alive_s: u64) -> (TcpListener, MqttSetup) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    (listener, setup(port, version, keep_alive_s))
}

async fn accept(listener: &TcpListener) -> Broker {
    let (tcp, _) = listener.accept().await.expect("a client");
    Broker {
        tcp,
        buf: BytesMut::new(),
    }
}

fn publish_of(packet: &[u8], version: Version) -> u16 {
    match wire::decode(version, packet) {
        Ok(Seen::Publish { pkid, .. }) => pkid,
        other => panic!("not a PUBLISH: {other:?}"),
    }
}

fn puback(pkid: u16) -> Vec<u8> {
    let mut out = Vec::new();
    wire::put_puback(&mut out, pkid);
    out
}

/// A chatload message from user 2 as a QoS 1 PUBLISH to user 1.
fn delivery_to_user_1(id: u64, pkid: u16) -> Vec<u8> {
    let frame = crate::protocol::msg(&crate::protocol::Delivery {
        seq: 0,
        id,
        from: 2,
        to: 1,
        group: None,
        intended_us: 1,
        sent_us: 1,
        body: "hi",
        wamid: 0,
        kind: None,
        media_bytes: 0,
    });
    let mut out = Vec::new();
    wire::put_publish(&mut out, Version::V311, "u/1", 1, pkid, frame.as_bytes());
    out
}

#[tokio::test(flavor = "current_thread")]
async fn acknowledgements_pair_with_their_messages_by_packet_id() {
    let (listener, setup) = pair(MqttVersion::V311, 30).await;
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        b.log_in(&CONNACK_311, &[]).await;
        let mut pkids = Vec::new();
        for _ in 0..3 {
            pkids.push(publish_of(
                &b.packet().await.expect("a PUBLISH"),
                Version::V311,
            ));
        }
        // Acknowledged in the reverse order.
        for pkid in pkids.iter().rev() {
            b.send(&puback(*pkid)).await;
        }
        b
    });
    let mut s = setup.connect(1, &[], LIMIT).await.expect("connected");
    // From the source address the setup names.
    let local = s.local_addr().expect("a local address");
    assert_eq!(local.ip().to_string(), "127.0.0.2");
    for id in [70, 71, 72] {
        s.publish_message("u/2".into(), format!("m{id}"), id);
    }
    let mut accepted = Vec::new();
    while accepted.len() < 3 {
        match tokio::time::timeout(LIMIT, s.next_event())
            .await
            .expect("in time")
        {
            Incoming::Accepted { id } => accepted.push(id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, [72, 71, 70]);
    drop(
        tokio::time::timeout(LIMIT, broker)
            .await
            .expect("the broker finished"),
    );
}

/// An MQTT 5 broker that takes two unacknowledged publishes gets two; the rest wait and go
/// as acknowledgements come; and once `HELD` wait, the session says the broker stopped.
#[tokio::test(flavor = "current_thread")]
async fn the_window_holds_publishes_and_a_full_hold_gives_the_session_up() {
    let (listener, setup) = pair(MqttVersion::V5, 30).await;
    // CONNACK, success, Receive Maximum 2.
    let connack = [0x20, 6, 0, 0, 3, 0x21, 0, 2];
    let (first_two, rest) = tokio::sync::oneshot::channel();
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        b.log_in(&connack, &[]).await;
        let one = publish_of(&b.packet().await.expect("a PUBLISH"), Version::V5);
        let _two = publish_of(&b.packet().await.expect("a PUBLISH"), Version::V5);
        // Nothing more comes while both are unacknowledged.
        let third = tokio::time::timeout(Duration::from_millis(300), b.packet()).await;
        assert!(third.is_err(), "a third publish beyond Receive Maximum");
        let _ = first_two.send(());
        b.send(&puback(one)).await;
        let three = b.packet().await.expect("the held publish, released");
        publish_of(&three, Version::V5);
        // From here on nothing is acknowledged.
        b
    });
    let mut s = setup.connect(1, &[], LIMIT).await.expect("connected");
    for id in 0..3 {
        s.publish_message("u/2".into(), "m".into(), id);
    }
    let next = tokio::time::timeout(LIMIT, s.next_event());
    let rest = async {
        rest.await.expect("the broker saw two");
    };
    // The session writes while the broker counts; the first PUBACK is its next event.
    let (event, ()) = tokio::join!(next, rest);
    assert_eq!(event.expect("in time"), Incoming::Accepted { id: 0 });
    let _broker = tokio::time::timeout(LIMIT, broker)
        .await
        .expect("the broker got the held publish");
    // Two in flight again (1 and 2): HELD more wait, and one more is too many.
    for id in 3..3 + HELD as u64 + 1 {
        s.publish_message("u/2".into(), "m".into(), id);
    }
    match tokio::time::timeout(LIMIT, s.next_event())
        .await
        .expect("in time")
    {
        Incoming::Lost { kind, detail } => {
            assert_eq!(kind, ErrorKind::TargetNotReading);
            assert_eq!(
                detail,
                format!(
                    "the broker stopped taking publishes: {HELD} waited to be written (QoS 1: behind 2 unacknowledged)"
                )
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A PINGREQ goes when nothing was sent for the keep-alive; a broker that then does not
/// answer one by the next is given up.
#[tokio::test(flavor = "current_thread")]
async fn keep_alive_pings_and_gives_up_on_a_broker_that_stops_answering() {
    let (listener, setup) = pair(MqttVersion::V311, 1).await;
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        b.log_in(&CONNACK_311, &[]).await;
        let ping = b.packet().await.expect("a PINGREQ");
        assert_eq!(ping, [0xc0, 0]);
        b.send(&[0xd0, 0]).await;
        let ping = b.packet().await.expect("a second PINGREQ");
        assert_eq!(ping, [0xc0, 0]);
        // Unanswered; the connection stays open.
        b
    });
    let mut s = setup.connect(1, &[], LIMIT).await.expect("connected");
    let started = Instant::now();
    let event = tokio::time::timeout(LIMIT, s.next_event())
        .await
        .expect("in time");
    let waited = started.elapsed();
    match event {
        Incoming::Lost { kind, detail } => {
            assert_eq!(kind, ErrorKind::RequestTimeout);
            assert!(detail.contains("did not answer a PINGREQ"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Two pings a keep-alive apart, then a third keep-alive without an answer.
    assert!(waited >= Duration::from_millis(2900), "{waited:?}");
    drop(
        tokio::time::timeout(LIMIT, broker)
            .await
            .expect("the broker finished"),
    );
}

/// What the broker handed over before the goodbye is acknowledged and counted; what it
/// sends after DISCONNECT is neither (the broker keeps it for the next connection).
#[tokio::test(flavor = "current_thread")]
async fn a_goodbye_acknowledges_what_came_before_it_and_nothing_after() {
    let (listener, setup) = pair(MqttVersion::V311, 30).await;
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        let kept = [delivery_to_user_1(1, 5), delivery_to_user_1(2, 6)].concat();
        b.log_in(&CONNACK_311, &kept).await;
        let mut seen = Vec::new();
        while let Some(p) = b.packet().await {
            seen.push(p.clone());
            if p == [0xe0, 0] {
                b.send(&delivery_to_user_1(3, 7)).await;
                // Whatever the client says now would come before its close.
                let after = tokio::time::timeout(Duration::from_millis(300), b.packet()).await;
                assert!(
                    matches!(after, Err(_) | Ok(None)),
                    "the client said more after DISCONNECT: {after:?}"
                );
                break;
            }
        }
        seen
    });
    let mut s = setup.connect(1, &[], LIMIT).await.expect("connected");
    let mut counted = 0;
    // The broker closes only when its end is dropped: the test bounds the wait.
    let _ = tokio::time::timeout(Duration::from_secs(2), s.close_counting(&mut counted)).await;
    let seen = tokio::time::timeout(LIMIT, broker)
        .await
        .expect("the broker finished")
        .expect("the broker ran");
    assert_eq!(counted, 2);
    assert_eq!(
        seen,
        [puback(5), puback(6), vec![0xe0, 0]],
        "PUBACK 5 and 6, then DISCONNECT"
    );
}

/// A broker that hands over more than `EARLY_LIMIT` messages before confirming the
/// subscription is refused rather than held in memory.
#[tokio::test(flavor = "current_thread")]
async fn a_broker_that_floods_before_its_suback_is_given_up() {
    let (listener, setup) = pair(MqttVersion::V311, 30).await;
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        let flood: Vec<u8> = (0..EARLY_LIMIT as u64 + 1)
            .flat_map(|id| {
                let mut p = delivery_to_user_1(id, 0);
                // QoS 0: no packet id, nothing to acknowledge.
                p.clear();
                let frame = format!("{{\"op\":\"typing\",\"from\":2,\"r\":{id}}}");
                wire::put_publish(&mut p, Version::V311, "u/1", 0, 0, frame.as_bytes());
                p
            })
            .collect();
        b.log_in(&CONNACK_311, &flood).await;
        b
    });
    let Err(e) = setup.connect(1, &[], LIMIT).await else {
        panic!("connected")
    };
    assert_eq!(e.kind, ErrorKind::Protocol);
    assert!(e.detail.contains("more than 4096 messages"), "{}", e.detail);
    drop(
        tokio::time::timeout(LIMIT, broker)
            .await
            .expect("the broker finished"),
    );
}

/// A packet longer than chatload takes is refused at its length field, before any of its
/// body is held.
#[tokio::test(flavor = "current_thread")]
async fn a_packet_longer_than_chatload_takes_is_refused_at_its_length() {
    let (listener, setup) = pair(MqttVersion::V311, 30).await;
    let broker = tokio::spawn(async move {
        let mut b = accept(&listener).await;
        b.log_in(&CONNACK_311, &[]).await;
        // A PUBLISH declaring 4 MiB, of which only the header comes.
        b.send(&[0x30, 0xfb, 0xff, 0xff, 0x01]).await;
        b
    });
    let mut s = setup.connect(1, &[], LIMIT).await.expect("connected");
    match tokio::time::timeout(LIMIT, s.next_event())
        .await
        .expect("in time")
    {
        Incoming::Lost { kind, detail } => {
            assert_eq!(kind, ErrorKind::Protocol);
            assert!(
                detail.starts_with(
                    "the broker sent a packet of 4194304 bytes; chatload reads packets of at most"
                ),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(s.inbuf.len() <= READ_CHUNK, "nothing of it was held");
    drop(
        tokio::time::timeout(LIMIT, broker)
            .await
            .expect("the broker finished"),
    );
}

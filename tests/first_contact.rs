//! The first connection's failures, as a user meets them: each names what actually answered
//! (an HTTP status and a hint about the path, a protocol version or credentials an MQTT
//! broker refused, the first bytes of a frame in another protocol) and says "not reachable"
//! only when nothing answered at all. Each target here is a small server made to answer
//! exactly one way; the binary exits 3 with one sentence for each.

mod common;

use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A server on a free loopback port that answers every connection with `answer`.
async fn answering(answer: Answer) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                match answer {
                    Answer::Mqtt311Only => mqtt_311_only(s).await,
                    Answer::Silent => unanswering(s).await,
                    Answer::ThenSilent(bytes) => {
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        let _ = s.write_all(bytes).await;
                        unanswering(s).await;
                    }
                    Answer::Raw(bytes) => {
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf).await;
                        let _ = s.write_all(bytes).await;
                        let _ = s.shutdown().await;
                    }
                    Answer::WebSocketText(text) => {
                        use futures_util::SinkExt;
                        if let Ok(mut ws) = tokio_tungstenite::accept_async(s).await {
                            let _ = ws
                                .send(tokio_tungstenite::tungstenite::Message::text(text))
                                .await;
                            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                        }
                    }
                }
            });
        }
    });
    port
}

/// Takes what the client says and answers nothing, as a server process that is stopped
/// (SIGSTOP) or wedged: its kernel still accepts the connection.
async fn unanswering(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

#[derive(Clone, Copy)]
enum Answer {
    /// Read what the client says, write these bytes, close.
    Raw(&'static [u8]),
    /// Accept the WebSocket upgrade and send this text frame.
    WebSocketText(&'static str),
    /// Accept the connection and never answer.
    Silent,
    /// Read what the client says, write these bytes, then answer nothing more.
    ThenSilent(&'static [u8]),
    /// An MQTT broker that speaks 3.1.1 only (MQTT 3.1.1 §3.1.2.2: a CONNECT of another
    /// protocol level gets return code 1, unacceptable protocol level, and the close).
    Mqtt311Only,
}

/// One MQTT packet: its first byte and its body.
async fn read_packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = s.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await.ok()?;
        len |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

async fn mqtt_311_only(mut s: tokio::net::TcpStream) {
    let Some((0x10, connect)) = read_packet(&mut s).await else {
        return;
    };
    // Protocol name (2 + 4 bytes), then the level.
    if connect.get(6) != Some(&4) {
        let _ = s.write_all(&[0x20, 0x02, 0x00, 0x01]).await;
        return;
    }
    let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
    while let Some((kind, body)) = read_packet(&mut s).await {
        match kind >> 4 {
            8 => {
                // SUBSCRIBE: packet id, then (length, topic, qos) per filter; grant QoS 1.
                let (mut at, mut granted) = (2, Vec::new());
                while at + 2 <= body.len() {
                    let n = u16::from_be_bytes([body[at], body[at + 1]]) as usize;
                    at += 2 + n + 1;
                    granted.push(0x01);
                }
                let mut ack = vec![0x90, (2 + granted.len()) as u8, body[0], body[1]];
                ack.extend(granted);
                let _ = s.write_all(&ack).await;
            }
            12 => {
                let _ = s.write_all(&[0xd0, 0x00]).await;
            }
            14 => return,
            _ => {}
        }
    }
}

struct Case {
    name: &'static str,
    answer: Option<Answer>,
    /// `ws` or `mqtt` and what else the [target] needs.
    target: fn(u16) -> (String, String),
    /// What the one sentence must say.
    says: &'static [&'static str],
}

fn ws(path: &'static str) -> fn(u16) -> (String, String) {
    match path {
        "/wrong" => |p| (format!("ws://127.0.0.1:{p}/wrong"), String::new()),
        _ => |p| (format!("ws://127.0.0.1:{p}/v1/ws"), String::new()),
    }
}

fn mqtt(port: u16, version: &str) -> (String, String) {
    let url = format!("mqtt://127.0.0.1:{port}");
    let target = format!("[target]\nurl = \"{url}\"\n\n[target.mqtt]\nversion = \"{version}\"\n");
    (url, target)
}

/// A target whose first session gives up after 1 s, at `url` with `{p}` for the port.
fn quick(url: String) -> (String, String) {
    let target = format!("[target]\nurl = \"{url}\"\nconnect_timeout = \"1s\"\n");
    (url, target)
}

/// An XMPP target on `port` whose log-in gives up after 1 s, registering its accounts or
/// not.
fn xmpp(port: u16, register: bool) -> (String, String) {
    let url = format!("xmpp://127.0.0.1:{port}");
    let target = format!(
        "[target]\nurl = \"{url}\"\nprotocol = \"xmpp\"\nconnect_timeout = \"1s\"\n\n[target.xmpp]\ndomain = \"localhost\"\nregister = {register}\n"
    );
    (url, target)
}

/// An XMPP server's answer to the stream header, offering `features`.
macro_rules! xmpp_stream_with {
    ($features:literal) => {
        concat!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' ",
            "xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>",
            "<stream:features>",
            $features,
            "</stream:features>"
        )
        .as_bytes()
    };
}

fn mqtt5(port: u16) -> (String, String) {
    mqtt(port, "5")
}

fn mqtt311(port: u16) -> (String, String) {
    mqtt(port, "3.1.1")
}

/// `chatload run` of a small chat scenario with `target` as its [target], at `url`.
async fn run_against(url: String, target: &str) -> std::process::Output {
    let file = common::scenario_file(&common::chat_scenario(5, 1, 0, target));
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_chatload"))
            .args([
                "run",
                file.path.to_str().unwrap(),
                "--quiet",
                "--target",
                &url,
            ])
            .arg("--out")
            .arg(file.dir.path().join("bundle"))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failed_first_connection_names_what_answered() {
    let cases = [
        Case {
            name: "a wrong path on chatload serve",
            answer: None,
            target: ws("/wrong"),
            says: &["HTTP 404", "/v1/ws", "check the path in --target"],
        },
        Case {
            name: "an HTTP 501",
            answer: Some(Answer::Raw(
                b"HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )),
            target: ws("/v1/ws"),
            says: &[
                "HTTP 501 Not Implemented",
                "instead of 101 Switching Protocols",
            ],
        },
        Case {
            name: "a first frame that is not JSON",
            answer: Some(Answer::WebSocketText(
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            )),
            target: ws("/v1/ws"),
            says: &[
                "answered, but not in the chatload protocol",
                "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'",
            ],
        },
        Case {
            name: "MQTT 5 refused by a 3.1.1-only broker",
            answer: Some(Answer::Mqtt311Only),
            target: mqtt5,
            says: &[
                "MQTT broker",
                "refused the MQTT protocol version",
                "accepted MQTT 3.1.1",
                "version = \"3.1.1\"",
            ],
        },
        Case {
            name: "a WebSocket server that accepts and never answers",
            answer: Some(Answer::Silent),
            target: |p| quick(format!("ws://127.0.0.1:{p}/v1/ws")),
            says: &[
                "accepted a TCP connection, but did not answer in the chatload protocol",
                "(the WebSocket upgrade was not answered within 1s)",
                "not stopped or overloaded",
            ],
        },
        Case {
            name: "an MQTT broker that accepts and never answers",
            answer: Some(Answer::Silent),
            target: |p| quick(format!("mqtt://127.0.0.1:{p}")),
            says: &[
                "accepted a TCP connection, but did not answer in the MQTT protocol",
                "within 1s",
            ],
        },
        Case {
            name: "an XMPP server that accepts and never answers",
            answer: Some(Answer::Silent),
            target: |p| xmpp(p, false),
            says: &[
                "accepted the connection but did not complete the log-in",
                "(the connection was open, but the stream header got no answer within 1s)",
                "not stopped or overloaded",
                "the XMPP protocol",
            ],
        },
        Case {
            name: "an XMPP server that never answers the SASL authentication",
            answer: Some(Answer::ThenSilent(xmpp_stream_with!(
                "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms>"
            ))),
            target: |p| xmpp(p, false),
            says: &["(the stream was open, but the SASL authentication got no answer within 1s)"],
        },
        Case {
            name: "an XMPP server that never answers the account registration",
            answer: Some(Answer::ThenSilent(xmpp_stream_with!(
                "<register xmlns='http://jabber.org/features/iq-register'/>"
            ))),
            target: |p| xmpp(p, true),
            says: &[
                "(the stream was open, but the account registration request got no answer within 1s)",
            ],
        },
        Case {
            name: "MQTT credentials refused",
            // Return code 4: bad user name or password.
            answer: Some(Answer::Raw(&[0x20, 0x02, 0x00, 0x04])),
            target: mqtt311,
            says: &["MQTT broker", "rejected the credentials", "[target.auth]"],
        },
    ];
    let serve = common::ServeProcess::start(&[]);
    for case in cases {
        let port = match case.answer {
            Some(a) => answering(a).await,
            None => serve.port,
        };
        let (url, target) = (case.target)(port);
        let out = run_against(url, &target).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{}: {}", case.name, stderr.trim());
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", case.name);
        assert!(
            !stderr.contains("not reachable"),
            "{}: something answered, so it is not 'not reachable': {stderr}",
            case.name
        );
        for phrase in case.says {
            assert!(
                stderr.contains(phrase),
                "{}: the sentence should say {phrase:?}: {stderr}",
                case.name
            );
        }
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{}: one sentence: {stderr}",
            case.name
        );
    }
}

/// An XMPP target whose listening queue is full: the kernel drops the connection request
/// itself, nothing answers at all, and that is the one case said as "not reachable" — not
/// "accepted the connection", as a log-in's timeout once put it whatever step it was in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xmpp_server_that_takes_no_connection_is_not_reachable() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    // Fills the queue (backlog + 1 on Linux) and one more, which the kernel leaves hanging.
    let held: Vec<_> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)).ok()
        })
        .collect();
    assert_eq!(held.len(), 2, "the queue holds two connections");
    let (url, target) = xmpp(addr.port(), false);
    let out = run_against(url, &target).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", stderr.trim());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("is not reachable")
            && stderr
                .contains("no TCP connection within 1s: the connection request was not answered"),
        "{stderr}"
    );
    assert!(!stderr.contains("accepted"), "{stderr}");
    drop((held, listener));
}

//! chatload against a chat gateway it has never heard of: a small WebSocket gateway written
//! here with its own framing (binary JSON frames, named users, its own message ids, rooms,
//! a token log-in) that chatload speaks only through the scenario's `[target.gateway]`
//! templates and JSON pointers. The token comes from the environment and never shows up in
//! the bundle.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const TOKEN_VAR: &str = "CHATLOAD_TEST_GATEWAY_TOKEN";
const TOKEN: &str = "gw-secret-7f3a9c1e";
const WRONG_TOKEN_VAR: &str = "CHATLOAD_TEST_GATEWAY_WRONG_TOKEN";

fn env() {
    set_env_once(&[
        (TOKEN_VAR, TOKEN),
        (WRONG_TOKEN_VAR, "wrong-token-99887766"),
    ]);
}

#[derive(Default)]
struct Gateway {
    online: Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>,
    rooms: Mutex<HashMap<String, Vec<String>>>,
    next_mid: AtomicU64,
    posts: AtomicU64,
    refused_logins: AtomicU64,
    /// Upgrades that carried the client header and offered `chat.v2` (answered with it),
    /// and upgrades that did not (refused 400).
    good_upgrades: AtomicU64,
    bad_upgrades: AtomicU64,
}

impl Gateway {
    fn to(&self, user: &str, v: Value) {
        if let Some(tx) = self.online.lock().unwrap().get(user) {
            let _ = tx.send(v);
        }
    }
}

async fn serve(listener: TcpListener, gw: Arc<Gateway>) {
    while let Ok((stream, _)) = listener.accept().await {
        let gw = gw.clone();
        tokio::spawn(async move {
            use tokio_tungstenite::tungstenite::handshake::server::{
                ErrorResponse, Request, Response,
            };
            // The callback's type is tungstenite's.
            #[allow(clippy::result_large_err)]
            let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
                let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
                let client_ok =
                    header("x-chat-client").is_some_and(|v| v.starts_with("loadtest-u"));
                let offered = header("sec-websocket-protocol")
                    .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat.v2"));
                if client_ok && offered {
                    gw.good_upgrades.fetch_add(1, Relaxed);
                    resp.headers_mut()
                        .insert("sec-websocket-protocol", "chat.v2".parse().unwrap());
                    Ok(resp)
                } else {
                    gw.bad_upgrades.fetch_add(1, Relaxed);
                    let mut refusal = ErrorResponse::new(Some("who are you".into()));
                    *refusal.status_mut() = hyper::StatusCode::BAD_REQUEST;
                    Err(refusal)
                }
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, check).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
            tokio::spawn(async move {
                while let Some(v) = rx.recv().await {
                    if sink
                        .send(Message::binary(v.to_string().into_bytes()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
            let mut me: Option<String> = None;
            while let Some(Ok(m)) = stream.next().await {
                let bytes = match &m {
                    Message::Binary(b) => b.to_vec(),
                    Message::Text(t) => t.as_bytes().to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                    let _ = tx.send(json!({"type": "oops", "why": "not json"}));
                    continue;
                };
                match (v["type"].as_str(), &me) {
                    (Some("login"), _) => {
                        if v["token"] == TOKEN {
                            let name = v["user"].as_str().unwrap_or("").to_string();
                            gw.online.lock().unwrap().insert(name.clone(), tx.clone());
                            me = Some(name);
                            let _ = tx.send(json!({"type": "welcome"}));
                        } else {
                            gw.refused_logins.fetch_add(1, Relaxed);
                            let _ = tx.send(json!({"type": "oops", "why": "bad token"}));
                        }
                    }
                    (Some("join"), Some(name)) => {
                        let room = v["room"].as_str().unwrap_or("").to_string();
                        gw.rooms
                            .lock()
                            .unwrap()
                            .entry(room)
                            .or_default()
                            .push(name.clone());
                    }
                    (Some("post"), Some(name)) => {
                        gw.posts.fetch_add(1, Relaxed);
                        let mid = gw.next_mid.fetch_add(1, Relaxed) + 1000;
                        let _ = tx.send(json!({"type": "posted", "ref": v["ref"], "mid": mid}));
                        let out = json!({"type": "incoming", "mid": mid, "sender": name, "text": v["text"]});
                        match v["room"].as_str() {
                            Some(room) => {
                                let members = gw
                                    .rooms
                                    .lock()
                                    .unwrap()
                                    .get(room)
                                    .cloned()
                                    .unwrap_or_default();
                                for m in members.iter().filter(|m| *m != name) {
                                    let mut o = out.clone();
                                    o["room"] = json!(room);
                                    gw.to(m, o);
                                }
                            }
                            None => gw.to(v["dest"].as_str().unwrap_or(""), out),
                        }
                    }
                    (Some("got"), Some(name)) => {
                        if let Some(to) = v["to"].as_str() {
                            gw.to(to, json!({"type": "receipt", "ref": v["ref"], "by": name}));
                        }
                    }
                    _ => {
                        let _ = tx.send(json!({"type": "oops", "why": "unknown"}));
                    }
                }
            }
            if let Some(name) = me {
                gw.online.lock().unwrap().remove(&name);
            }
        });
    }
}

fn gateway_target(url: &str, token_var: &str) -> String {
    format!(
        r#"[target]
url = "{url}"
protocol = "ws-gateway"

[target.auth]
token_env = "{token_var}"

[target.gateway]
binary = true
headers = {{ X-Chat-Client = "loadtest-u{{{{user}}}}" }}
subprotocols = ["chat.v1", "chat.v2"]
hello = '{{"type":"login","user":"u-{{{{user}}}}","token":"{{{{token}}}}"}}'
ready = {{ pointer = "/type", equals = "welcome" }}
join = '{{"type":"join","room":"r{{{{group}}}}"}}'
send = '{{"type":"post","dest":"u-{{{{to}}}}","ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
send_group = '{{"type":"post","room":"r{{{{group}}}}","ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
delivered = '{{"type":"got","ref":"{{{{id}}}}","to":"u-{{{{from}}}}"}}'
message = {{ match = {{ pointer = "/type", equals = "incoming" }}, id = "/text", from = "/sender", group = "/room" }}
accepted = {{ match = {{ pointer = "/type", equals = "posted" }}, id = "/ref" }}
receipt = {{ match = {{ pointer = "/type", equals = "receipt" }}, id = "/ref" }}
error = {{ pointer = "/type", equals = "oops" }}
"#
    )
}

async fn start_gateway() -> (String, Arc<Gateway>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    let gw = Arc::new(Gateway::default());
    tokio::spawn(serve(listener, gw.clone()));
    (url, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_described_gateway_is_driven_and_measured() {
    env();
    let (url, gw) = start_gateway().await;
    let text = chat_scenario(120, 4, 12, &gateway_target(&url, TOKEN_VAR));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.target.protocol, "ws-gateway");
    assert_eq!(
        gw.bad_upgrades.load(Relaxed),
        0,
        "every upgrade carried the header and offered the subprotocol"
    );
    assert!(
        gw.good_upgrades.load(Relaxed) >= 120,
        "one per user at least"
    );
    assert!(a.messages_sent > 150, "{a:?}");
    assert_eq!(
        gw.posts.load(Relaxed),
        a.messages_sent,
        "the gateway saw every send"
    );
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.delivered, a.sent);
    assert_eq!((a.duplicated, a.unexpected), (0, 0), "{a:?}");
    assert_eq!(
        a.acked, a.messages_sent,
        "every post was confirmed by `posted`"
    );
    // Every delivery's `got` comes back as a receipt, but the last few may still be on
    // their way when the senders leave at the end.
    assert!(
        a.receipts <= a.delivered && a.receipts * 100 >= a.delivered * 98,
        "receipts {} for {} deliveries",
        a.receipts,
        a.delivered
    );
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    let offline = s.metrics.get("delivery_offline").map_or(0, |m| m.count);
    assert_eq!(s.metrics["delivery"].count + offline, a.delivered);
    // The token is used, never written down.
    common::assert_bundle_hides(&r.bundle_dir, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_log_in_is_one_clear_error_without_the_token() {
    env();
    let (url, gw) = start_gateway().await;
    let text = chat_scenario(10, 1, 0, &gateway_target(&url, WRONG_TOKEN_VAR));
    let file = scenario_file(&text);
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let opts = chatload::engine::RunOptions {
        out: Some(file.dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let e = match chatload::engine::run(scenario, &opts).await {
        Ok(_) => panic!("a refused log-in must stop the run before it starts"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("refused the log-in"), "{e}");
    assert!(!e.contains("wrong-token-99887766"), "{e}");
    assert_eq!(gw.refused_logins.load(Relaxed), 1);
}

/// A gateway that, once a user is logged in, writes to it as fast as the connection takes,
/// so that a frame is always waiting to be read; it counts the heartbeats it is sent.
async fn flooding_gateway() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    let pings = Arc::new(AtomicU64::new(0));
    let counted = pings.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let pings = counted.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                // The log-in: whatever the user says first is answered with a welcome.
                if !matches!(stream.next().await, Some(Ok(_))) {
                    return;
                }
                let welcome = Message::text(json!({"type": "welcome"}).to_string());
                if sink.send(welcome).await.is_err() {
                    return;
                }
                let flood = tokio::spawn(async move {
                    // Large frames: the user takes longer to read one than the gateway to
                    // write it, so its socket is never empty.
                    let noise = Message::text(format!(
                        r#"{{"type":"noise","pad":"{}"}}"#,
                        "x".repeat(16 * 1024)
                    ));
                    // Bounded like every loop here: at most 20 s of flooding.
                    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
                    while tokio::time::Instant::now() < until {
                        for _ in 0..16 {
                            if sink.feed(noise.clone()).await.is_err() {
                                return;
                            }
                        }
                        if sink.flush().await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(Ok(m)) = stream.next().await {
                    if m.to_text().is_ok_and(|t| t.contains("ping")) {
                        pings.fetch_add(1, Relaxed);
                    }
                }
                flood.abort();
            });
        }
    });
    (url, pings)
}

/// A connection that always has a frame ready must not keep a user's own deadlines from
/// coming: the user's wait takes its deadline first (heartbeats here; a scheduled leave, a
/// storm and a reaction wait the same way). With the connection read first, the flooded
/// users sent 12–35 of their 136 heartbeats (three runs); under an earlier flood of small
/// frames the end of the run was once held back until the flood stopped (21 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_always_has_a_frame_ready_does_not_hold_back_a_heartbeat() {
    let (url, pings) = flooding_gateway().await;
    let text = format!(
        r#"[scenario]
name = "flooded"
seed = 9

[population.consumers]
users = 4
contacts = {{ uniform = {{ min = 1, max = 2 }} }}

[[pattern]]
kind = "presence"
session = {{ uniform = {{ min = "1h", max = "2h" }} }}
offline = {{ exponential = {{ mean = "1s" }} }}
heartbeat = "100ms"
updates = false

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "3s" }}]

[target]
url = "{url}"
protocol = "ws-gateway"

[target.gateway]
hello = '{{"type":"login","user":"u-{{{{user}}}}"}}'
ready = {{ pointer = "/type", equals = "welcome" }}
send = '{{"type":"post","dest":"u-{{{{to}}}}","ref":"{{{{id}}}}","text":"{{{{body}}}}"}}'
message = {{ match = {{ pointer = "/type", equals = "incoming" }}, id = "/text", from = "/sender" }}
heartbeat = '{{"type":"ping"}}'
"#
    );
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), run_text(&text, None))
        .await
        .expect("the run ends within 60 s");
    let took = started.elapsed();
    let presence = &r.summary.patterns[0].counters;
    eprintln!("run took {took:?}; heartbeats {}", presence.heartbeats);
    // 4 s of stages and a drain with nothing owed: the end comes on time.
    assert!(took < std::time::Duration::from_secs(12), "{took:?}");
    // 4 users connected for about 3 s (the ramp staggers them), one heartbeat every 100 ms:
    // 136 here.
    assert!(presence.heartbeats >= 60, "{presence:?}");
    // The gateway reads behind its flood: give it a moment to count the last ones.
    let settle = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while pings.load(Relaxed) < presence.heartbeats && tokio::time::Instant::now() < settle {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        pings.load(Relaxed),
        presence.heartbeats,
        "the gateway saw each"
    );
}

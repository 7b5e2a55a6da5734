//! chatload against a gateway whose frames are not JSON: a line protocol written here
//! (`HELLO`, `CHALLENGE`, `AUTH`, `WELCOME`, `SAY`, `OK`, `GOT`, `RCPT`), deliveries as
//! binary frames that start with a byte no text has (0xFF), and a log-in of two round trips
//! whose captured values (a nonce, then a session id) every later frame must carry.
//! chatload speaks it only through `[target.gateway]` with `format = "text"`: patterns to
//! tell frames apart and read them, `[[target.gateway.login]]` steps with captures.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const TOKEN_VAR: &str = "CHATLOAD_TEST_LINE_GATEWAY_TOKEN";
const TOKEN: &str = "line-secret-51c2d7";
const WRONG_TOKEN_VAR: &str = "CHATLOAD_TEST_LINE_GATEWAY_WRONG_TOKEN";

fn env() {
    set_env_once(&[(TOKEN_VAR, TOKEN), (WRONG_TOKEN_VAR, "not-the-token-4411")]);
}

#[derive(Default)]
struct LineGateway {
    online: Mutex<HashMap<u32, mpsc::UnboundedSender<Message>>>,
    rooms: Mutex<HashMap<u32, Vec<u32>>>,
    logins: AtomicU64,
    denied: AtomicU64,
    says: AtomicU64,
    /// Commands whose session id was not the connection's, or sent before the log-in.
    bad_sessions: AtomicU64,
    next: AtomicU64,
}

impl LineGateway {
    fn to(&self, user: u32, m: Message) {
        if let Some(tx) = self.online.lock().unwrap().get(&user) {
            let _ = tx.send(m);
        }
    }
}

/// One connection: the challenge, the session, and the commands.
async fn connection(stream: tokio::net::TcpStream, gw: Arc<LineGateway>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut frames) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let say = |t: String| {
        let _ = tx.send(Message::text(t));
    };
    let mut user: Option<u32> = None;
    let mut nonce = String::new();
    let mut session = String::new();
    while let Some(Ok(m)) = frames.next().await {
        let line = match &m {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match verb {
            "HELLO" => {
                user = rest.strip_prefix('u').and_then(|n| n.parse().ok());
                nonce = format!("{:x}", 0xabc000 + gw.next.fetch_add(1, Relaxed));
                say(format!("CHALLENGE {nonce}"));
            }
            "AUTH" => {
                if rest == format!("{nonce}:{TOKEN}") && user.is_some() {
                    session = format!("s{}", gw.next.fetch_add(1, Relaxed));
                    gw.logins.fetch_add(1, Relaxed);
                    if let Some(u) = user {
                        gw.online.lock().unwrap().insert(u, tx.clone());
                    }
                    say(format!("WELCOME session={session} motd=hi"));
                } else {
                    gw.denied.fetch_add(1, Relaxed);
                    say("DENIED bad token".into());
                }
            }
            _ => {
                // Every other command carries the session id first.
                let (sid, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let Some(me) = user.filter(|_| !session.is_empty() && sid == session) else {
                    gw.bad_sessions.fetch_add(1, Relaxed);
                    say("ERR bad session".into());
                    continue;
                };
                match verb {
                    "JOIN" => {
                        if let Some(g) = rest.strip_prefix('r').and_then(|g| g.parse().ok()) {
                            gw.rooms.lock().unwrap().entry(g).or_default().push(me);
                        }
                    }
                    "SAY" => {
                        // SAY <sid> TO u<N> REF <id> :<body> | SAY <sid> ROOM r<G> REF <id> :<body>
                        let (head, body) = rest.split_once(" :").unwrap_or((rest, ""));
                        let words: Vec<&str> = head.split(' ').collect();
                        let Some(reference) = words.get(3) else {
                            say("ERR bad say".into());
                            continue;
                        };
                        gw.says.fetch_add(1, Relaxed);
                        say(format!("OK {reference}"));
                        let number =
                            |w: Option<&&str>| -> Option<u32> { w?.get(1..)?.parse().ok() };
                        let delivery = |room: Option<u32>| {
                            let mut out = vec![0xff];
                            out.extend_from_slice(format!("MSG u{me}").as_bytes());
                            if let Some(g) = room {
                                out.extend_from_slice(format!(" r{g}").as_bytes());
                            }
                            out.extend_from_slice(format!(" :{body}").as_bytes());
                            Message::binary(out)
                        };
                        match words.first() {
                            Some(&"TO") => {
                                if let Some(to) = number(words.get(1)) {
                                    gw.to(to, delivery(None));
                                }
                            }
                            Some(&"ROOM") => {
                                if let Some(g) = number(words.get(1)) {
                                    let members = gw
                                        .rooms
                                        .lock()
                                        .unwrap()
                                        .get(&g)
                                        .cloned()
                                        .unwrap_or_default();
                                    for m in members.into_iter().filter(|m| *m != me) {
                                        gw.to(m, delivery(Some(g)));
                                    }
                                }
                            }
                            _ => say("ERR bad say".into()),
                        }
                    }
                    "GOT" => {
                        // GOT <sid> <ref> u<from>
                        if let Some((reference, from)) = rest.split_once(' ')
                            && let Some(from) = from.strip_prefix('u').and_then(|f| f.parse().ok())
                        {
                            gw.to(from, Message::text(format!("RCPT {reference}")));
                        }
                    }
                    _ => say(format!("ERR unknown {verb}")),
                }
            }
        }
    }
    if let Some(u) = user {
        gw.online.lock().unwrap().remove(&u);
    }
}

async fn start_gateway() -> (String, Arc<LineGateway>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/line", listener.local_addr().unwrap());
    let gw = Arc::new(LineGateway::default());
    let server = gw.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, server.clone()));
        }
    });
    (url, gw)
}

fn line_target(url: &str, token_var: &str) -> String {
    format!(
        r#"[target]
url = "{url}"
protocol = "ws-gateway"

[target.auth]
token_env = "{token_var}"

[target.gateway]
format = "text"
join = 'JOIN {{{{captured.sid}}}} r{{{{group}}}}'
send = 'SAY {{{{captured.sid}}}} TO u{{{{to}}}} REF {{{{id}}}} :{{{{body}}}}'
send_group = 'SAY {{{{captured.sid}}}} ROOM r{{{{group}}}} REF {{{{id}}}} :{{{{body}}}}'
delivered = 'GOT {{{{captured.sid}}}} {{{{id}}}} u{{{{from}}}}'
message = {{ match = {{ pattern = '(?-u)^\xffMSG u(?P<from>\d+)(?: r(?P<group>\d+))? :(?P<body>.*)' }}, id = "body", from = "from", group = "group" }}
accepted = {{ match = {{ pattern = '^OK (?P<ref>\d+)$' }}, id = "ref" }}
receipt = {{ match = {{ pattern = '^RCPT (?P<ref>\d+)$' }}, id = "ref" }}
error = {{ pattern = '^(ERR|DENIED) ' }}

[[target.gateway.login]]
send = 'HELLO u{{{{user}}}}'
expect = {{ pattern = '^CHALLENGE (?P<nonce>[0-9a-f]+)$' }}

[[target.gateway.login]]
send = 'AUTH {{{{captured.nonce}}}}:{{{{token}}}}'
expect = {{ pattern = '^WELCOME session=(?P<sid>\w+)' }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_protocol_with_binary_deliveries_and_a_two_step_log_in_is_measured() {
    env();
    let (url, gw) = start_gateway().await;
    let users = 80;
    let text = chat_scenario(users, 3, 8, &line_target(&url, TOKEN_VAR));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_clean(s);
    assert!(a.messages_sent > 100, "{a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_eq!(
        gw.logins.load(Relaxed),
        u64::from(users) + 1,
        "one log-in per user, and the pre-flight session's"
    );
    assert_eq!(gw.denied.load(Relaxed), 0);
    assert_eq!(
        gw.bad_sessions.load(Relaxed),
        0,
        "every frame carried the session id captured at log-in"
    );
    assert_eq!(
        gw.says.load(Relaxed),
        a.messages_sent,
        "the gateway saw every send"
    );
    assert_eq!(a.acked, a.messages_sent, "every SAY was confirmed by OK");
    assert!(
        a.receipts <= a.delivered && a.receipts * 100 >= a.delivered * 98,
        "RCPT for the GOTs: {} of {}",
        a.receipts,
        a.delivered
    );
    let room = s
        .patterns
        .iter()
        .find(|p| p.name == "group_chat")
        .expect("group_chat");
    assert!(
        room.accounting.delivered > 0 && s.metrics.get("fanout").is_some_and(|m| m.count > 0),
        "room deliveries were read with their group from the binary frames"
    );
    common::assert_bundle_hides(&r.bundle_dir, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_step_names_the_step_and_what_the_gateway_said() {
    env();
    let (url, gw) = start_gateway().await;
    let text = chat_scenario(5, 1, 0, &line_target(&url, WRONG_TOKEN_VAR));
    let err = refused_run(&text).await;
    assert!(
        err.contains("refused the log-in")
            && err.contains("step 2")
            && err.contains("DENIED bad token"),
        "{err}"
    );
    assert!(!err.contains("not-the-token-4411"), "{err}");
    assert_eq!(gw.denied.load(Relaxed), 1);
    assert_eq!(gw.logins.load(Relaxed), 0);
}

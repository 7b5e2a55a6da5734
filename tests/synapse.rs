//! chatload against a real Synapse homeserver through its client-server and
//! application-service APIs, with `scenarios/matrix-chat.toml` as shipped (only the
//! addresses changed): `chatload setup matrix` registers the population and makes a room
//! per group and per contact pair; each send is a PUT of an `m.room.message` as its user;
//! Synapse pushes every room's events to chatload's webhook, and the room says whom a
//! message was for. The homeserver's own database counts what it took; a proxy that
//! swallows known transactions gives exactly that loss. Each test starts its own Synapse.

mod common;

use common::synapse::{AS_TOKEN, Synapse};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const TOKEN_VAR: &str = "CHATLOAD_MATRIX_AS_TOKEN";

/// The shipped scenario pointed at this homeserver, its webhook at `webhook_port`, its ids
/// file at `ids`; `groups = false` leaves only one-to-one chat.
fn scenario(server: &Synapse, webhook_port: u16, ids: &std::path::Path, groups: bool) -> String {
    let mut text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/matrix-chat.toml"
    ))
    .expect("scenarios/matrix-chat.toml")
    .replace("http://127.0.0.1:8008", &server.url())
    .replace("127.0.0.1:8009", &format!("127.0.0.1:{webhook_port}"))
    .replace(
        "\"matrix-ids.json\"",
        &format!("{:?}", ids.display().to_string()),
    )
    .replace("duration = \"20s\"", "duration = \"6s\"")
    .replace("users = 40", "users = 24")
    .replace("\"4/min per user\"", "\"20/min per user\"")
    .replace("\"6/min per group\"", "\"30/min per group\"")
    .replace(
        "stages = [{ ramp = \"2s\" }, { hold = \"18s\" }]",
        "stages = [{ ramp = \"1s\" }, { hold = \"5s\" }]",
    );
    if !groups {
        text = text.replace("groups = 5", "groups = 0").replace(
            "[[pattern]]\nkind = \"group_chat\"\nrate = \"30/min per group\"\nsize = 60\n",
            "",
        );
    }
    text
}

/// Runs `chatload setup matrix` for `text` and returns where it wrote the ids.
fn setup(server: &Synapse, text: &str, webhook_port: u16) -> std::path::PathBuf {
    let file = server
        .dir
        .path()
        .join(format!("scenario-{webhook_port}.toml"));
    let ids = server.dir.path().join("matrix-ids.json");
    std::fs::write(&file, text).expect("write scenario");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["setup", "matrix"])
        .arg(&file)
        .args(["--homeserver", &server.url(), "-o"])
        .arg(&ids)
        .env(TOKEN_VAR, AS_TOKEN)
        .output()
        .expect("chatload runs");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "setup: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("24 users") && !said.contains(AS_TOKEN),
        "{said}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_room_messages_balance_and_match_the_homeservers_database() {
    let Some(server) = Synapse::start() else {
        return;
    };
    set_env_once(&[(TOKEN_VAR, AS_TOKEN)]);
    let ids = server.dir.path().join("matrix-ids.json");
    let text = scenario(&server, server.webhook_port, &ids, true);
    setup(&server, &text, server.webhook_port);
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_clean(s);
    assert!(a.messages_sent > 50, "{a:?}");
    assert!(a.sent > a.messages_sent, "rooms fan out: {a:?}");
    assert_eq!(
        a.acked, a.messages_sent,
        "every PUT answered with an event id"
    );
    assert_eq!(
        server.messages_stored(),
        a.messages_sent,
        "Synapse's database holds what chatload says it sent"
    );
    assert_eq!(s.target.webhook_redelivered, 0);
    common::assert_bundle_hides(&r.bundle_dir, AS_TOKEN);
}

/// Between Synapse and chatload's webhook: forwards every transaction but each `every`-th,
/// which it answers `200 {}` itself, counting the room messages in it.
struct Swallower {
    transactions: AtomicU64,
    swallowed_messages: AtomicU64,
    passed_messages: AtomicU64,
}

async fn swallowing_proxy(listen: u16, chatload: u16, every: u64) -> Arc<Swallower> {
    let state = Arc::new(Swallower {
        transactions: AtomicU64::new(0),
        swallowed_messages: AtomicU64::new(0),
        passed_messages: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen))
        .await
        .expect("bind the application service's port");
    let http = reqwest::Client::new();
    let s = state.clone();
    common::http_server::serve(
        listener,
        None,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let (s, http) = (s.clone(), http.clone());
            async move {
                let path = req.uri().path().to_string();
                let body = common::http_server::body_bytes(req).await;
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let messages = v["events"].as_array().map_or(0, |e| {
                    e.iter().filter(|e| e["type"] == "m.room.message").count()
                }) as u64;
                let n = s.transactions.fetch_add(1, Relaxed) + 1;
                if messages > 0 && n.is_multiple_of(every) {
                    s.swallowed_messages.fetch_add(messages, Relaxed);
                } else {
                    s.passed_messages.fetch_add(messages, Relaxed);
                    let _ = http
                        .put(format!("http://127.0.0.1:{chatload}{path}"))
                        .body(body)
                        .send()
                        .await;
                }
                Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"{}"),
                )))
            }
        },
    );
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_a_proxy_swallows_are_lost_exactly() {
    let Some(server) = Synapse::start() else {
        return;
    };
    set_env_once(&[(TOKEN_VAR, AS_TOKEN)]);
    // chatload's webhook behind the proxy; one-to-one only, so each room message is owed
    // to exactly one user.
    let inner = free_port();
    let ids = server.dir.path().join("matrix-ids.json");
    let text = scenario(&server, inner, &ids, false);
    // The set-up answers Synapse's pushes at the application service's own port.
    setup(
        &server,
        &scenario(&server, server.webhook_port, &ids, false),
        server.webhook_port,
    );
    let proxy = swallowing_proxy(server.webhook_port, inner, 4).await;
    let r = run_text(&text, None).await;
    let a = &r.summary.accounting;
    let swallowed = proxy.swallowed_messages.load(Relaxed);
    assert!(swallowed >= 3, "the proxy swallowed some: {swallowed}");
    assert_eq!(a.lost, swallowed, "lost = swallowed by the proxy: {a:?}");
    assert_eq!(a.delivered, proxy.passed_messages.load(Relaxed), "{a:?}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    assert_eq!((a.in_flight, a.duplicated), (0, 0), "{a:?}");
    assert_eq!(server.messages_stored(), a.messages_sent);
}

#[test]
fn the_readme_shows_the_configuration_ci_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let config = common::synapse::CONFIG
        .replace("{dir}", "/var/lib/chatload-synapse")
        .replace("{port}", "8008");
    let registration = common::synapse::REGISTRATION
        .replace("{webhook_port}", "8009")
        .replace("{as_token}", "<a long random token>")
        .replace("{hs_token}", "<another>");
    for (what, shown) in [("homeserver.yaml", config), ("registration", registration)] {
        assert!(
            readme.contains(shown.trim_end()),
            "README.md's Synapse {what} differs from tests/common/synapse.rs"
        );
    }
}

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
use std::time::Duration;

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

/// Runs `chatload setup matrix` for `text`; what it printed to stdout and stderr.
fn setup(server: &Synapse, text: &str, webhook_port: u16) -> (String, String) {
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
    let warned = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "setup: {said}{warned}");
    assert!(
        said.contains("24 users") && !said.contains(AS_TOKEN) && !warned.contains(AS_TOKEN),
        "{said}{warned}"
    );
    assert!(said.contains(&ids.display().to_string()), "{said}");
    (said, warned)
}

/// `method` on the room's `action` (`leave`, `send/<type>/<txn>`) as `user`, through the
/// application service, as a person might.
async fn in_room(server: &Synapse, method: reqwest::Method, room: &str, action: &str, user: &str) {
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/{action}?user_id={}",
        server.url(),
        percent_encoding::utf8_percent_encode(room, percent_encoding::NON_ALPHANUMERIC),
        percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC),
    );
    let answer = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(AS_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("synapse answers");
    assert!(
        answer.status().is_success(),
        "{action}: {}",
        answer.status()
    );
}

const JOINED: &str =
    "select count(*) from current_state_events where type='m.room.member' and membership='join'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_room_messages_balance_and_match_the_homeservers_database() {
    let Some(server) = Synapse::start() else {
        return;
    };
    set_env_once(&[(TOKEN_VAR, AS_TOKEN)]);
    let ids = server.dir.path().join("matrix-ids.json");
    let text = scenario(&server, server.webhook_port, &ids, true);
    let (said, _) = setup(&server, &text, server.webhook_port);
    assert!(said.contains("5 group rooms made"), "{said}");
    let first = std::fs::read_to_string(&ids).expect("ids file");
    let (rooms, joined) = (server.rooms_stored(), server.count(JOINED));
    // Someone leaves a direct room between set-ups: the next set-up finds every room by its
    // alias, makes none, and brings them back.
    let file: serde_json::Value = serde_json::from_str(&first).expect("ids JSON");
    let (pair, room) = file["direct"]
        .as_object()
        .and_then(|d| d.iter().next())
        .expect("a direct room");
    let b = pair.split_once('-').expect("a-b").1;
    let user_b = file["users"][b].as_str().expect("user id");
    let room = room.as_str().expect("room id");
    in_room(&server, reqwest::Method::POST, room, "leave", user_b).await;
    assert_eq!(server.count(JOINED), joined - 1);
    let (said, _) = setup(&server, &text, server.webhook_port);
    assert!(
        said.contains("5 group rooms found from an earlier set-up")
            && said.contains("direct rooms found from an earlier set-up")
            && !said.contains("made"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&ids).expect("ids file"), first);
    assert_eq!(server.rooms_stored(), rooms, "no room made twice");
    assert_eq!(server.count(JOINED), joined, "who left is back");
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
    // The same scenario again at once, as a user repeats a run: the homeserver keeps each
    // transaction id it took for 30 to 60 minutes and answers a PUT under one again with
    // the first event, making none.
    let again = run_text(&text, None).await;
    assert_clean(&again.summary);
    assert_eq!(
        server.messages_stored(),
        a.messages_sent + again.summary.accounting.messages_sent,
        "the second run's messages are new events"
    );
}

/// A push that found nothing listening (between runs) makes the homeserver count the
/// application service as down and hold back every later event until its next retry, each
/// retry twice as far off. The run's webhook ping (`ping` in the shipped scenario) brings
/// the service back before the first message; without it this run's first seconds of
/// deliveries wait for the retry 8 s away and count as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_the_homeserver_counts_as_down_is_back_before_the_first_message() {
    let Some(server) = Synapse::start() else {
        return;
    };
    set_env_once(&[(TOKEN_VAR, AS_TOKEN)]);
    let ids = server.dir.path().join("matrix-ids.json");
    let text = scenario(&server, server.webhook_port, &ids, false);
    assert!(text.contains("\nping = "), "the shipped scenario pings");
    setup(&server, &text, server.webhook_port);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ids).expect("ids file")).expect("ids JSON");
    let (pair, room) = file["direct"]
        .as_object()
        .and_then(|d| d.iter().next())
        .expect("a direct room");
    let a = pair.split_once('-').expect("a-b").0;
    let user_a = file["users"][a].as_str().expect("user id");
    // An event of a type no scenario counts: pushed to the service like any other.
    let room = room.as_str().expect("room id");
    in_room(
        &server,
        reqwest::Method::PUT,
        room,
        "send/org.chatload.test/t1",
        user_a,
    )
    .await;
    // Two mistakes the ping finds before any traffic: a webhook where the registration's
    // `url` does not point, and another registration's id.
    let elsewhere = free_port();
    for (what, wrong, said) in [
        (
            "listen",
            text.replace(
                &format!("127.0.0.1:{}", server.webhook_port),
                &format!("127.0.0.1:{elsewhere}"),
            ),
            "HTTP 502 Bad Gateway",
        ),
        (
            "id",
            text.replace("/appservice/chatload/ping", "/appservice/other/ping"),
            "HTTP 403 Forbidden",
        ),
    ] {
        let file = server.dir.path().join(format!("wrong-{what}.toml"));
        std::fs::write(&file, &wrong).expect("write scenario");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
            .arg("run")
            .arg(&file)
            .arg("--out")
            .arg(server.dir.path().join(format!("bundle-{what}")))
            .env(TOKEN_VAR, AS_TOKEN)
            .output()
            .expect("chatload runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "wrong {what}: {err}");
        assert!(
            err.contains("the target answered the webhook ping")
                && err.contains(said)
                && !err.contains(AS_TOKEN),
            "wrong {what}: {err}"
        );
        if what == "listen" {
            assert!(err.contains(&format!("127.0.0.1:{elsewhere}")), "{err}");
        }
    }
    // Its push and two retries find nothing listening: the next retry is 8 s away.
    let waiting = tokio::task::spawn_blocking(move || {
        let down = server.wait_for_log(
            "Scheduling retries on chatload in 8.",
            Duration::from_secs(30),
        );
        (server, down)
    });
    let (server, down) = waiting.await.expect("the wait ends");
    assert!(down, "the homeserver counts the service as down");
    let r = run_text(&text, None).await;
    let a = &r.summary.accounting;
    assert_clean(&r.summary);
    assert!(a.messages_sent > 30, "{a:?}");
    assert_eq!(server.messages_stored(), a.messages_sent);
    assert!(server.wait_for_log("Successfully recovered application service", Duration::ZERO));
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
    // A registration from before set-ups named their rooms: rooms without aliases, said so.
    let Some(server) = Synapse::start_with(&common::synapse::registration_without_aliases()) else {
        return;
    };
    set_env_once(&[(TOKEN_VAR, AS_TOKEN)]);
    // chatload's webhook behind the proxy; one-to-one only, so each room message is owed
    // to exactly one user.
    let inner = free_port();
    let ids = server.dir.path().join("matrix-ids.json");
    let text = scenario(&server, inner, &ids, false);
    // The set-up answers Synapse's pushes at the application service's own port.
    let (said, warned) = setup(
        &server,
        &scenario(&server, server.webhook_port, &ids, false),
        server.webhook_port,
    );
    assert!(
        said.contains("direct rooms made without an alias")
            && warned.contains("reserves no room aliases"),
        "{said}{warned}"
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

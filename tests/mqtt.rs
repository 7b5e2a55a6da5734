//! chatload against a real mosquitto broker over loopback: the same patterns, metrics and
//! accounting as over chatload's own protocol, MQTT 3.1.1 and 5, QoS 1 and 0, and a broker
//! killed in the middle of a run (counted, survived, and the books still balance).

mod common;

use common::mosquitto::{Broker, Options};
use common::*;

fn env() {
    set_env_once(&[
        ("CHATLOAD_TEST_MQTT_USER", "loadtest"),
        ("CHATLOAD_TEST_MQTT_PASSWORD", "pw-4a1f9e77"),
        ("CHATLOAD_TEST_MQTT_WRONG_PASSWORD", "wrong-pw-0c0ffee"),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_311_qos1_loses_nothing_and_balances() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let text = chat_scenario(150, 4, 15, &mqtt_target(&broker.url(), "qos = 1"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.target.protocol, "mqtt");
    assert!(a.messages_sent > 200, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "group topics fan out: {a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert_eq!(a.in_flight, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(a.delivered, a.sent);
    assert_eq!((a.duplicated, a.unexpected, a.not_sent), (0, 0, 0), "{a:?}");
    assert_eq!(a.acked, a.messages_sent, "every publish got its PUBACK");
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    let d = &s.metrics["delivery"];
    let offline = s.metrics.get("delivery_offline").map_or(0, |m| m.count);
    assert_eq!(
        d.count + offline,
        a.delivered,
        "one latency per first delivery"
    );
    assert!(d.p99_us < 500_000, "loopback broker p99 {} µs", d.p99_us);
    assert!(
        s.metrics["send"].count == a.acked,
        "PUBACK latency per publish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_qos0_delivers_to_online_subscribers() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let text = chat_scenario(
        100,
        3,
        10,
        &mqtt_target(
            &broker.url(),
            "version = \"5\"\nqos = 0\nuser_topic = \"t/{{user}}/in\"",
        ),
    );
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.messages_sent > 100, "{a:?}");
    assert_eq!(a.lost, 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    // QoS 0 has no confirmation: nothing acked, nothing kept for a resend.
    assert_eq!(a.acked, 0);
    assert_eq!(a.retransmitted, 0);
    // MQTT 5's no-local option keeps our own group messages from coming back.
    assert_eq!(a.unexpected, 0);
    assert_eq!(a.duplicated, 0);
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_run_is_counted_and_survived() {
    env();
    let Some(mut broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let text = chat_scenario(100, 10, 0, &mqtt_target(&broker.url(), "qos = 1"));
    let file = scenario_file(&text);
    let scenario = chatload::scenario::load(&file.path).expect("scenario");
    let opts = chatload::engine::RunOptions {
        out: Some(file.dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let run = tokio::spawn(async move { chatload::engine::run(scenario, &opts).await });
    // The kill is timed from the run's own start, not the test's: the pre-flight (100 MQTT
    // sessions registered, 64 at a time) can take seconds on a loaded machine, and a kill
    // then stops the run before it starts. All 100 users connected marks the end of the
    // 1 s ramp; the kill comes 3 s later, at about 4 s into the run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut most = 0;
    loop {
        let now = established(broker.port);
        most = most.max(now);
        if now >= 100 {
            break;
        }
        // A run that ended (or failed) first will never connect them: say how it ended.
        if run.is_finished() {
            match run.await.expect("run task") {
                Ok(r) => panic!(
                    "the run ended before all 100 users were connected at once (at most {most}): errors {:?}, {:?}",
                    r.summary.errors, r.summary.accounting
                ),
                Err(e) => panic!("the run failed before all users connected: {e}"),
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the users never all connected (at most {most} at once)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    broker.kill();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    broker.restart();
    let restarted_at = 5.5;
    let r = run
        .await
        .expect("run task")
        .expect("the run survives the broker");
    let s = &r.summary;
    let a = &s.accounting;
    let dropped: u64 = ["connection_reset", "connection_closed", "connect_refused"]
        .iter()
        .map(|k| s.errors.get(*k).copied().unwrap_or(0))
        .sum();
    assert!(
        dropped >= 100,
        "every user's lost connection is counted: {:?}",
        s.errors
    );
    let back = s
        .series
        .points
        .iter()
        .filter(|p| p.t_s > restarted_at + 2.0)
        .map(|p| p.connected)
        .max()
        .unwrap_or(0);
    assert_eq!(back, 100, "every user reconnected to the restarted broker");
    assert!(a.balances(), "the books balance through the outage: {a:?}");
    let after: u64 = s
        .series
        .points
        .iter()
        .filter(|p| p.t_s > restarted_at + 1.5)
        .map(|p| p.delivered)
        .sum();
    assert!(after > 100, "deliveries resume after the restart: {after}");
    // What is lost was meant to leave while the broker was away: nothing meant before the kill
    // (at about 4 s; the interval ending at 3 s is clear of it) and nothing meant a second
    // after every user was back is lost. (A share of the total, as this once said, depends on
    // how long the reconnects took.)
    let all_back_at = s
        .series
        .points
        .iter()
        .find(|p| p.t_s > restarted_at && p.connected == 100)
        .map(|p| p.t_s)
        .expect("all users back");
    for p in &s.series.points {
        let meant_from = p.t_s - 1.0;
        if p.t_s <= 3.0 || meant_from >= all_back_at + 1.0 {
            assert_eq!(
                p.lost, 0,
                "messages meant at {meant_from}-{} s, outside the outage (all back at {all_back_at} s), are lost: {a:?}",
                p.t_s
            );
        }
    }
    assert!(a.lost > 0 && a.delivered > a.lost, "{a:?}");
    assert!(a.retransmitted > 0 || a.lost > 0 || a.not_sent > 0, "{a:?}");
    assert!(
        a.schedule_balances(),
        "every scheduled message accounted for: {a:?}"
    );
    eprintln!("broker killed: errors {:?}, accounting {a:?}", s.errors);
}

/// Established TCP connections whose local port is `port` (the broker's side of each).
fn established(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.lines()
                .skip(1)
                .filter(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.len() > 3 && cols[1].ends_with(&local) && cols[3] == "01"
                })
                .count()
        })
        .sum()
}

fn password_broker(user: &str, password: &str) -> Option<Broker> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("passwords");
    let made = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&file)
        .args([user, password])
        .status();
    if !made.is_ok_and(|s| s.success()) {
        common::mosquitto::binary()?;
        panic!("mosquitto_passwd (part of the mosquitto package) failed");
    }
    let extra = format!("password_file {}\n", file.display());
    let broker = Broker::start(Options { extra });
    // The password file must outlive the broker's start; mosquitto reads it once.
    drop(dir);
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_environment_and_a_refusal_is_clear() {
    env();
    let Some(broker) = password_broker("loadtest", "pw-4a1f9e77") else {
        return;
    };
    let target = format!(
        "{}[target.auth]\nusername_env = \"CHATLOAD_TEST_MQTT_USER\"\npassword_env = \"CHATLOAD_TEST_MQTT_PASSWORD\"\n",
        mqtt_target(&broker.url(), "qos = 1")
    );
    let r = run_text(&chat_scenario(30, 2, 0, &target), None).await;
    let a = &r.summary.accounting;
    assert!(a.messages_sent > 10 && a.lost == 0 && a.balances(), "{a:?}");

    let wrong = target.replace(
        "CHATLOAD_TEST_MQTT_PASSWORD",
        "CHATLOAD_TEST_MQTT_WRONG_PASSWORD",
    );
    let file = scenario_file(&chat_scenario(5, 1, 0, &wrong));
    let scenario = chatload::scenario::load(&file.path).unwrap();
    let opts = chatload::engine::RunOptions {
        out: Some(file.dir.path().join("bundle")),
        quiet: true,
        ..Default::default()
    };
    let e = match chatload::engine::run(scenario, &opts).await {
        Ok(_) => panic!("a broker that refuses the credentials must stop the run"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("rejected the credentials"), "{e}");
    assert!(!e.contains("not reachable"), "mosquitto answered: {e}");
    assert!(!e.contains("wrong-pw-0c0ffee"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_api_and_its_mqtt_subscription_log_in_with_credentials_of_their_own() {
    env();
    let Some(broker) = password_broker("loadtest", "pw-4a1f9e77") else {
        return;
    };
    // Sends go to the embedded server's HTTP endpoint with a token; each user's deliveries
    // are subscribed to on the broker, which wants a user name and password instead. (The
    // embedded server does not publish to MQTT, so what is checked here is who logs in
    // where, not deliveries.)
    let target = |subscribe_auth: &str| {
        format!(
            r#"[target]
protocol = "http"

[target.auth]
token_env = "CHATLOAD_TEST_MQTT_WRONG_PASSWORD"

[target.http]
url = "/v1/users/{{{{user}}}}/messages"
body = '{{"to":{{{{to}}}},"group":{{{{group}}}},"id":{{{{id}}}},"body":"{{{{body}}}}"}}'
subscribe = "{}"
{subscribe_auth}
"#,
            broker.url()
        )
    };
    let own = target(
        "subscribe_auth = { username_env = \"CHATLOAD_TEST_MQTT_USER\", password_env = \"CHATLOAD_TEST_MQTT_PASSWORD\" }",
    );
    let r = run_text(&chat_scenario(5, 1, 0, &own), None).await;
    let s = &r.summary;
    assert_eq!(
        s.metrics["connect"].count, 5,
        "every subscription logged in"
    );
    assert!(
        !s.errors.contains_key("broker_refused"),
        "the broker took the subscription's own credentials: {:?}",
        s.errors
    );
    assert_eq!(
        s.accounting.acked, s.accounting.messages_sent,
        "the API took every send"
    );

    // Without them the token is the MQTT password, and the broker refuses it.
    let e = refused_run(&chat_scenario(5, 1, 0, &target(""))).await;
    assert!(e.contains("rejected the credentials"), "{e}");
    assert!(!e.contains("wrong-pw-0c0ffee"), "{e}");
}

/// Chat in which half the users leave and the rest go on writing to groups they share, so
/// recipients are offline when the schedule ends and what the broker queued for them must
/// be collected.
fn leaving_scenario(target: &str) -> String {
    chat_scenario(120, 3, 30, target).replace(
        "stages = [{ ramp = \"1s\" }, { hold = \"3s\" }]",
        "stages = [{ ramp = \"1s\" }, { hold = \"2s\" }, { ramp_down = \"1s\", to = 0.5 }, { hold = \"2s\" }]",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_recipients_collect_their_queued_qos1_messages_at_the_end() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let text = leaving_scenario(&mqtt_target(&broker.url(), "qos = 1"));
    assert!(
        text.contains("ramp_down"),
        "the scenario ends with everyone leaving"
    );
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    let offline = s.metrics.get("delivery_offline").map_or(0, |m| m.count);
    assert!(offline > 0, "some recipients were away when sent to: {a:?}");
    assert_eq!(
        (a.lost, a.in_flight, a.unverified),
        (0, 0, 0),
        "the persistent sessions kept them: {a:?}"
    );
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
    assert!(
        s.metrics["connect"].count > 120,
        "recipients owed messages came back for them: {:?}",
        s.metrics["connect"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_proxy_drops_on_the_way_to_subscribers_are_lost_exactly() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let proxy = common::mqtt_proxy::MqttProxy::start(broker.port, 25).await;
    // Everyone stays connected to the end: a PUBLISH lost on a live connection is never
    // sent again by the broker, so each dropped one is a lost delivery. No groups: MQTT
    // 3.1.1 echoes a member's own group message back, which is owed to no one.
    let text = chat_scenario(100, 4, 0, &mqtt_target(&proxy.url(), "qos = 1"));
    let r = run_text(&text, None).await;
    assert_lost_exactly(
        &r.summary.accounting,
        proxy.publishes.load(std::sync::atomic::Ordering::Relaxed),
        proxy.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(!r.summary.passed || r.summary.thresholds.is_empty());
}

/// Every 20th chat PUBLISH from mosquitto reaches its subscriber 2 s late (twice the loss
/// deadline): each is lost and also counted as delivered late, never as delivered, and
/// `loss == 0` fails. The proxy delays only in its first 5 s and a quiet tail follows, so
/// every held one arrives while the run still listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_a_proxy_delays_past_the_deadline_are_lost_and_delivered_late() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let proxy = common::mqtt_proxy::MqttProxy::delaying(
        broker.port,
        20,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(5),
    )
    .await;
    let text = chat_scenario(100, 3, 0, &mqtt_target(&proxy.url(), "qos = 1"))
        .replace(
            r#"stages = [{ ramp = "1s" }, { hold = "3s" }]"#,
            r#"stages = [{ ramp = "1s" }, { hold = "3s" }, { hold = "1ms", rate = 0.0 }, { hold = "3s" }]"#,
        )
        + "\n[thresholds]\n\"loss\" = \"== 0\"\n";
    assert!(
        text.contains("rate = 0.0"),
        "the quiet tail is in the scenario"
    );
    let r = run_text(&text, None).await;
    let a = &r.summary.accounting;
    let delayed = proxy.delayed.load(std::sync::atomic::Ordering::Relaxed);
    let published = proxy.publishes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(delayed >= 10, "the proxy delayed some: {delayed}");
    assert_eq!(published, a.sent, "one PUBLISH per owed delivery: {a:?}");
    assert_eq!(a.lost, delayed, "every delayed delivery is lost: {a:?}");
    assert_eq!(a.delivered_late, delayed, "and arrived late: {a:?}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    assert_eq!(
        (a.in_flight, a.unverified, a.duplicated),
        (0, 0, 0),
        "{a:?}"
    );
    assert_eq!(
        r.summary.metrics["delivery_late"].count, delayed,
        "each late arrival has its latency"
    );
    assert!(r.summary.metrics["delivery_late"].p50_us >= 2_000_000);
    assert!(!r.summary.passed, "loss == 0 fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_persistent_sessions_offline_deliveries_are_unverified_and_fail_loss() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    // Clean sessions: the broker forgets a user at disconnect, so nothing can show what it
    // would have kept for an offline recipient.
    let target = format!(
        "{}\n[thresholds]\n\"loss\" = \"== 0\"\n",
        mqtt_target(&broker.url(), "qos = 1\nclean_session = true")
    );
    let text = leaving_scenario(&target);
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.unverified > 0, "{a:?}");
    assert!(a.balances(), "{a:?}");
    assert_eq!(s.offline_delivery, "verify");
    let loss = &s.thresholds[0];
    assert!(
        !loss.passed && loss.message.contains("unverified_ok"),
        "a loss rule does not pass over unverified deliveries: {loss:?}"
    );
    assert_eq!(
        s.metrics["connect"].count, 120,
        "nobody is brought back when the protocol cannot resume"
    );

    let accepted = text.replace(
        "drain = \"3s\"",
        "drain = \"3s\"\noffline_delivery = \"unverified_ok\"",
    );
    let r = run_text(&accepted, None).await;
    let s = &r.summary;
    assert_eq!(s.offline_delivery, "unverified_ok");
    let loss = &s.thresholds[0];
    assert_eq!(
        loss.passed,
        s.accounting.lost == 0,
        "the rule judges only what could be checked: {loss:?} {:?}",
        s.accounting
    );
}

/// A proxy in front of mosquitto that cuts every client connection with a TCP reset (RST,
/// not a close) 2 s after it was made.
async fn resetting_proxy(broker_port: u16) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::os::fd::AsRawFd;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resets = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = resets.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(broker) = tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
            else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let fd = client.as_raw_fd();
                let (mut cr, mut cw) = client.into_split();
                let (mut br, mut bw) = broker.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut bw).await;
                    (cr, bw)
                });
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut br, &mut cw).await;
                    (br, cw)
                });
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                // A reset and nothing before it: connect(AF_UNSPEC) disconnects an
                // established TCP socket with RST (Linux `tcp_disconnect`). Dropping the
                // halves instead would shut the write half first, and the client would
                // read a FIN, a clean close, before the RST.
                // SAFETY: a zeroed sockaddr of family AF_UNSPEC, on a socket this task owns.
                unsafe {
                    let mut unspec: libc::sockaddr = std::mem::zeroed();
                    unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
                    libc::connect(
                        fd,
                        &unspec,
                        std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
                    );
                }
                up.abort();
                down.abort();
                let _ = (up.await, down.await);
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    });
    (port, resets)
}

/// Connections a broker's side resets are `connection_reset` errors, never `protocol`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connections_reset_by_the_network_are_counted_as_resets() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let (port, resets) = resetting_proxy(broker.port).await;
    let text = chat_scenario(
        30,
        4,
        0,
        &mqtt_target(&format!("mqtt://127.0.0.1:{port}"), "qos = 1"),
    );
    let r = run_text(&text, None).await;
    let errors = &r.summary.errors;
    assert!(
        resets.load(std::sync::atomic::Ordering::Relaxed) >= 30,
        "the proxy reset every first connection"
    );
    assert!(
        errors.get("connection_reset").copied().unwrap_or(0) >= 30,
        "{errors:?} {:?}",
        r.summary.error_examples
    );
    assert_eq!(
        errors.get("protocol").copied().unwrap_or(0),
        0,
        "{errors:?} {:?}",
        r.summary.error_examples
    );
}

#[test]
fn the_readme_shows_the_broker_configurations_ci_runs() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let shown = [
        (
            "mosquitto",
            format!(
                "{}allow_anonymous true",
                common::mosquitto::CONFIG.replace("{port}", "1883")
            ),
        ),
        (
            "NATS",
            common::nats::CONFIG
                .replace("{client_port}", "4222")
                .replace("{monitor_port}", "8222")
                .replace("{store}", "/var/lib/chatload-nats")
                .replace("{mqtt_port}", "1883"),
        ),
        (
            "RabbitMQ",
            common::rabbitmq::CONFIG
                .replace("{amqp}", "5672")
                .replace("{mqtt_port}", "1883"),
        ),
    ];
    for (broker, config) in shown {
        assert!(
            readme.contains(config.trim_end()),
            "README.md's {broker} configuration differs from tests/common"
        );
    }
    assert!(readme.contains(common::rabbitmq::PLUGINS.trim_end()));
}

/// Memory per MQTT 5 connection stays small. rumqttc kept a slot for every QoS 1 publish an
/// MQTT 5 connection may have in flight, 65,535 unless told: 17 MB per connection, 5 GB for
/// 300 users, decided by a library default; with a window of 100 its event loop still took
/// 44 MB for these 300 users. chatload's own client takes about 24 MB here (10 KiB a
/// connection over the process's own). Measured on the `chatload` process itself (its own peak RSS
/// from `wait4`), not this test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_memory_per_connection_stays_small() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let users = 300;
    let text = chat_scenario(
        users,
        2,
        0,
        &mqtt_target(
            &broker.url(),
            "version = \"5\"\nqos = 1\nuser_topic = \"t/{{user}}/in\"",
        ),
    );
    let file = scenario_file(&text);
    let out_dir = file.dir.path().join("bundle");
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"));
    run.args(["run", file.path.to_str().unwrap(), "--quiet", "--out"])
        .arg(&out_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let usage = tokio::task::spawn_blocking(move || {
        common::reaped(run, std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    let peak_kib = usage.ru_maxrss;
    let summary: chatload::report::Summary =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.peak_connected, u64::from(users));
    assert_clean(&summary);
    eprintln!("MQTT 5 memory: peak RSS {peak_kib} KiB for {users} users");
    // 512 KiB per user, the process's own memory included: 24–26 MB measured here, 44 MB
    // with rumqttc's event loop, 17 MB per connection before its window was set. Not
    // tighter: one fresh-clone CI run measured 101 MB (all 300 connected, no error), which
    // is not explained yet.
    assert!(
        peak_kib < i64::from(users) * 512,
        "chatload's peak RSS {peak_kib} KiB for {users} MQTT 5 users (at its summary: {:?}); errors {:?}, {:?}",
        summary.own,
        summary.errors,
        summary.accounting
    );
}

/// In front of the broker: passes everything both ways until `deaf_after` past the first
/// PUBLISH a client sends (not past its own start: a set-up slowed by a busy machine would
/// find it deaf already), then reads nothing more from its clients (with a small receive
/// buffer), as a broker that stopped taking publishes would; the connections stay open.
async fn deaf_proxy(broker_port: u16, deaf_after: std::time::Duration) -> u16 {
    use std::sync::{Arc, OnceLock};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let port = listener.local_addr().unwrap().port();
    let deaf_at: Arc<OnceLock<tokio::time::Instant>> = Arc::new(OnceLock::new());
    tokio::spawn(async move {
        loop {
            // An aborted connection is an error of that one connection (ECONNABORTED), not
            // of the listener: ending the loop would reset every connection still queued.
            let client = match listener.accept().await {
                Ok((client, _)) => client,
                Err(e) => {
                    eprintln!("deaf proxy: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let deaf_at = deaf_at.clone();
            tokio::spawn(async move {
                let broker = match tokio::net::TcpStream::connect(("127.0.0.1", broker_port)).await
                {
                    Ok(broker) => broker,
                    Err(e) => {
                        // Seen once in CI as the run's pre-flight reset by this proxy; said
                        // here so that a recurrence names its cause.
                        eprintln!("deaf proxy: connecting to mosquitto: {e}");
                        return;
                    }
                };
                let _ = (client.set_nodelay(true), broker.set_nodelay(true));
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_broker, mut to_broker) = broker.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_broker, &mut to_client).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let deaf = async {
                        match deaf_at.get() {
                            Some(at) => tokio::time::sleep_until(*at).await,
                            None => std::future::pending().await,
                        }
                    };
                    let read = tokio::select! {
                        r = from_client.read(&mut buf) => r,
                        _ = deaf => break,
                    };
                    match read {
                        Ok(n) if n > 0 => {
                            // A read that starts with a PUBLISH (packet type 3) arms the deadline.
                            if buf[0] >> 4 == 3 {
                                deaf_at.get_or_init(|| tokio::time::Instant::now() + deaf_after);
                            }
                            if to_broker.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
                // Deaf from here on: holds the client's connection, reads nothing.
                std::future::pending::<()>().await;
                drop((from_client, to_broker));
            });
        }
    });
    port
}

/// A broker that stops taking publishes does not make chatload hold ever more, nor say
/// something untrue: once a connection's queue of publishes is full behind the
/// unacknowledged ones, it is given up as `target_not_reading`, the user connects again,
/// and no message is counted as one the protocol cannot say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_taking_publishes_is_given_up_in_one_true_sentence() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let port = deaf_proxy(broker.port, std::time::Duration::from_secs(2)).await;
    // 5 users, 100 messages a second each: the in-flight window (100) and the request queue
    // (256) of a connection fill within about 4 s of the proxy going deaf.
    let text = format!(
        r#"[scenario]
name = "deaf-broker"
seed = 3
loss_deadline = "1s"
drain = "1s"

[population.consumers]
users = 5
contacts = {{ uniform = {{ min = 1, max = 2 }} }}

[[pattern]]
kind = "direct_chat"
conversations = "6000/min per user"
messages = 1
size = 100
typing = 0
read = 0
media = {{ text = 1 }}

[load]
stages = [{{ ramp = "1s" }}, {{ hold = "9s" }}]

{}"#,
        mqtt_target(&format!("mqtt://127.0.0.1:{port}"), "qos = 1")
    );
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    eprintln!("errors {:?}; {a:?}", s.errors);
    assert!(
        s.errors.get("target_not_reading").copied().unwrap_or(0) >= 1,
        "{:?}",
        s.errors
    );
    let example = error_example(s, "target_not_reading");
    assert!(
        example.contains("the broker stopped taking publishes"),
        "{example}"
    );
    assert_eq!(a.not_sent_reasons.unsendable, 0, "{a:?}");
    assert!(!s.errors.contains_key("protocol"), "{:?}", s.error_examples);
}

/// What mosquitto kept in the persistent sessions of users an interrupted run had cut off
/// is handed over when the next run opens those sessions, before it sends anything. Counted
/// as an earlier run's; the registration pass used to acknowledge them without a count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_mosquitto_kept_from_an_interrupted_run_is_counted_as_an_earlier_runs() {
    env();
    let Some(broker) = Broker::start(Options {
        extra: String::new(),
    }) else {
        return;
    };
    let chat = |hold_s: u32| chat_scenario(80, hold_s, 0, &mqtt_target(&broker.url(), "qos = 1"));
    let first = interrupted_run(
        &with_half_the_users_away(&chat(30)),
        std::time::Duration::from_secs(5),
    )
    .await;
    let kept = first.accounting.unverified;
    assert!(kept >= 10, "owed to the users away: {:?}", first.accounting);
    // The next run is the same chat without the storm: everyone connects and stays.
    let second = run_text(&chat(2), None).await;
    let a = &second.summary.accounting;
    // By hand: 73 kept, 73 counted (0 before). A delivery the first run saw but had not
    // acknowledged when it stopped is handed over again too, so "at least".
    assert!(
        a.earlier_runs >= kept * 9 / 10,
        "what mosquitto kept of the {kept} was counted: {a:?}"
    );
    assert_eq!(
        (
            a.lost,
            a.in_flight,
            a.unverified,
            a.duplicated,
            a.unexpected
        ),
        (0, 0, 0, 0, 0),
        "{a:?}"
    );
    assert_eq!(a.delivered, a.sent, "{a:?}");
    let said = format!("earlier runs' messages handed over {}", a.earlier_runs);
    let console = chatload::report::console::render(&second.summary, None);
    assert!(console.contains(&said), "{console}");
}

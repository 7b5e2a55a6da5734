//! chatload's MQTT transport against NATS in its MQTT mode (nats-server with JetStream),
//! beside mosquitto in `tests/mqtt.rs`: the same scenario loses nothing and every publish is
//! acked; a proxy that drops known deliveries on their way to subscribers gives exactly that
//! loss.

mod common;

use common::nats::Nats;
use common::*;
use std::sync::atomic::Ordering::Relaxed;

fn mqtt_target(url: &str, settings: &str) -> String {
    format!("[target]\nurl = \"{url}\"\n\n[target.mqtt]\n{settings}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mqtt_311_qos1_loses_nothing_and_balances() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let text = chat_scenario(100, 3, 10, &mqtt_target(&nats.url(), "qos = 1"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert_eq!(s.target.protocol, "mqtt");
    assert!(a.messages_sent > 150, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "group topics fan out: {a:?}");
    assert_eq!(s.errors_total, 0, "{:?}", s.error_examples);
    assert_eq!((a.lost, a.in_flight, a.unverified), (0, 0, 0), "{a:?}");
    assert_eq!(a.delivered, a.sent, "{a:?}");
    assert_eq!((a.duplicated, a.unexpected, a.not_sent), (0, 0, 0), "{a:?}");
    assert_eq!(a.acked, a.messages_sent, "every publish got its PUBACK");
    assert!(a.balances() && a.schedule_balances(), "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publishes_a_proxy_drops_are_lost_exactly() {
    let Some(nats) = Nats::start() else {
        return;
    };
    let proxy = common::mqtt_proxy::MqttProxy::start(nats.mqtt_port, 25).await;
    // Everyone stays connected to the end and there are no groups (3.1.1 echoes a member's
    // own group message back, owed to no one): each dropped delivery is a lost one. QoS 0 to
    // subscribers: NATS would send an unacknowledged QoS 1 delivery again.
    let text = chat_scenario(100, 4, 0, &mqtt_target(&proxy.url(), "qos = 0"));
    let r = run_text(&text, None).await;
    let a = &r.summary.accounting;
    let dropped = proxy.dropped.load(Relaxed);
    let published = proxy.publishes.load(Relaxed);
    assert!(dropped >= 10, "the proxy dropped some: {dropped}");
    assert_eq!(published, a.sent, "one PUBLISH per owed delivery: {a:?}");
    assert_eq!(a.lost, dropped, "lost = dropped by the proxy: {a:?}");
    assert_eq!(a.delivered + a.lost, a.sent, "{a:?}");
    assert_eq!(
        (a.in_flight, a.unverified, a.duplicated),
        (0, 0, 0),
        "{a:?}"
    );
}

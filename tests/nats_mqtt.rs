//! chatload's MQTT transport against NATS in its MQTT mode (nats-server with JetStream),
//! beside mosquitto in `tests/mqtt.rs`: the same scenario loses nothing and every publish is
//! acked, and NATS's own count of what it took (its JetStream stream of MQTT messages)
//! equals chatload's; a proxy that drops known deliveries on their way to subscribers gives exactly that
//! loss.

mod common;

use common::nats::Nats;
use common::*;
use std::sync::atomic::Ordering::Relaxed;

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
    assert_clean(s);
    assert_eq!(a.acked, a.messages_sent, "every publish got its PUBACK");
    assert_eq!(
        nats.mqtt_messages_stored(),
        a.messages_sent,
        "NATS's own count (its $MQTT_msgs stream) equals chatload's"
    );
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
    assert_lost_exactly(
        &r.summary.accounting,
        proxy.publishes.load(Relaxed),
        proxy.dropped.load(Relaxed),
    );
}

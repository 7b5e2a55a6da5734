//! chatload's MQTT transport against RabbitMQ's MQTT plugin, beside mosquitto
//! (`tests/mqtt.rs`) and NATS (`tests/nats_mqtt.rs`). One broker for the binary (it takes
//! about 13 s to start): the scenario loses nothing, every publish is acked and the broker's
//! own counter of QoS 1 messages taken equals chatload's; then a proxy
//! in front of it drops every 25th delivery on its way to a subscriber, and exactly those are
//! lost.

mod common;

use common::rabbitmq::RabbitMq;
use common::*;
use std::sync::atomic::Ordering::Relaxed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_mqtt_loses_nothing_and_a_dropping_proxy_gives_exactly_its_loss() {
    let Some(broker) = tokio::task::spawn_blocking(RabbitMq::start)
        .await
        .expect("start")
    else {
        return;
    };
    let text = chat_scenario(100, 3, 10, &mqtt_target(&broker.url(), "qos = 1"));
    let r = run_text(&text, None).await;
    let s = &r.summary;
    let a = &s.accounting;
    assert!(a.messages_sent > 150, "enough traffic: {a:?}");
    assert!(a.sent > a.messages_sent, "group topics fan out: {a:?}");
    assert_clean(s);
    assert_eq!(a.acked, a.messages_sent, "every publish got its PUBACK");
    assert_eq!(
        broker.messages_received_confirmed(),
        a.messages_sent,
        "RabbitMQ's own counter of QoS 1 messages taken equals chatload's"
    );

    let proxy = common::mqtt_proxy::MqttProxy::start(broker.mqtt_port, 25).await;
    // No groups (3.1.1 echoes a member's own group message back, owed to no one) and QoS 0
    // to subscribers, so a dropped delivery is never sent again: each is a lost one. Client
    // ids and topics of their own: the first run's sessions persist, and RabbitMQ keeps a
    // QoS 1 and a QoS 0 queue per client, so the same topic at both would come twice
    // (reported as duplicates when tried).
    let text = chat_scenario(
        100,
        4,
        0,
        &mqtt_target(
            &proxy.url(),
            "qos = 0\nclient_id = \"proxied-{{user}}\"\nuser_topic = \"p/u/{{user}}\"",
        ),
    );
    let r = run_text(&text, None).await;
    assert_lost_exactly(
        &r.summary.accounting,
        proxy.publishes.load(Relaxed),
        proxy.dropped.load(Relaxed),
    );
}

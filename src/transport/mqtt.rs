//! MQTT 3.1.1 and 5 through rumqttc: each virtual user is one client that subscribes to its
//! own topic and its groups' topics and publishes to its recipients'. Payloads are chatload
//! frames, so the receiver reads the sender's timestamps and latency is end to end
//! (publisher → broker → subscriber). A PUBACK (QoS 1) is the send's confirmation.
//! Owns the MQTT session; the broker is the user's.

use super::mqtt_loop::{LoopState, run4, run5};
use super::{ConnectError, Incoming, Outgoing, Session, tls::TlsContext};
use crate::metrics::ErrorKind;
use crate::protocol::{self, Recipient};
use crate::scenario::target::{MqttTarget, MqttVersion};
use crate::scenario::template::{Slot, Value};
use rumqttc::v5 as m5;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Largest packet either way: chatload's largest body plus its frame.
const MAX_PACKET: usize = protocol::MAX_BODY + 4096;
/// Events a connection may have waiting for its virtual user.
const EVENT_QUEUE: usize = 256;
/// QoS 1 publishes a connection may have unacknowledged (rumqttc's MQTT 3.1.1 default).
/// Said for MQTT 5 too, where rumqttc's default is 65,535 and it keeps a slot for each up
/// front: about 17 MB per connection, 5 GB for 300 users.
const INFLIGHT: u16 = 100;

/// Everything needed to open one user's MQTT session.
pub struct MqttSetup {
    pub target: Arc<MqttTarget>,
    pub host: String,
    pub port: u16,
    pub tls: Option<TlsContext>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-user credentials from a file, when the scenario names one.
    pub per_user: Option<Arc<crate::secrets::Credentials>>,
}

impl MqttSetup {
    /// `user`'s user name and password: its row of the credentials file, else the shared.
    fn login_of(&self, user: u32) -> (Option<String>, Option<String>) {
        let Some(c) = &self.per_user else {
            return (self.username.clone(), self.password.clone());
        };
        let shown = |s: &Option<crate::secrets::Secret>| s.as_ref().map(|s| s.expose().to_string());
        let password = shown(c.password_of(user)).or_else(|| shown(c.token_of(user)));
        let username = shown(c.username_of(user))
            .or_else(|| password.as_ref().map(|_| "chatload".to_string()));
        (username, password)
    }

    /// The same broker and credentials, speaking MQTT 3.1.1: to tell a broker that refuses
    /// MQTT 5 from one that refuses everything.
    pub fn as_v311(&self) -> MqttSetup {
        let mut target = (*self.target).clone();
        target.version = crate::scenario::target::MqttVersion::V311;
        MqttSetup {
            target: Arc::new(target),
            host: self.host.clone(),
            port: self.port,
            tls: self.tls.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            per_user: self.per_user.clone(),
        }
    }

    pub fn is_v5(&self) -> bool {
        self.target.version == crate::scenario::target::MqttVersion::V5
    }
}

impl std::fmt::Debug for MqttSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MqttSetup({}:{})", self.host, self.port)
    }
}

/// Host and port of an `mqtt://` or `mqtts://` URL; the scheme says whether TLS is used.
pub fn parse_url(url: &str) -> Option<(String, u16, bool)> {
    let (scheme, rest) = url.split_once("://")?;
    let tls = matches!(scheme, "mqtts" | "ssl");
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (authority, if tls { 8883 } else { 1883 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port, tls))
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(m5::AsyncClient),
}

fn qos4(q: u8) -> rumqttc::QoS {
    if q == 0 {
        rumqttc::QoS::AtMostOnce
    } else {
        rumqttc::QoS::AtLeastOnce
    }
}

fn qos5(q: u8) -> m5::mqttbytes::QoS {
    if q == 0 {
        m5::mqttbytes::QoS::AtMostOnce
    } else {
        m5::mqttbytes::QoS::AtLeastOnce
    }
}

impl Client {
    fn publish(&self, topic: String, qos: u8, payload: Vec<u8>) -> bool {
        match self {
            Client::V4(c) => c.try_publish(topic, qos4(qos), false, payload).is_ok(),
            Client::V5(c) => c.try_publish(topic, qos5(qos), false, payload).is_ok(),
        }
    }

    fn subscribe(&self, topics: &[String], qos: u8) -> bool {
        match self {
            Client::V4(c) => c
                .try_subscribe_many(
                    topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos4(qos))),
                )
                .is_ok(),
            Client::V5(c) => c
                .try_subscribe_many(topics.iter().map(|t| {
                    let mut f = m5::mqttbytes::v5::Filter::new(t.clone(), qos5(qos));
                    // Our own group messages need not come back to us.
                    f.nolocal = true;
                    f
                }))
                .is_ok(),
        }
    }

    fn disconnect(&self) {
        match self {
            Client::V4(c) => {
                let _ = c.try_disconnect();
            }
            Client::V5(c) => {
                let _ = c.try_disconnect();
            }
        }
    }
}

/// One user's live MQTT session.
pub struct MqttSession {
    user: u32,
    target: Arc<MqttTarget>,
    client: Client,
    events: mpsc::Receiver<Incoming>,
    /// Ids of QoS 1 messages in publish order, for the event loop to pair with packet ids.
    awaiting_pkid: Arc<Mutex<VecDeque<u64>>>,
    task: tokio::task::JoinHandle<()>,
    /// A publish found the request queue full while the event loop was running: the broker
    /// stopped taking what this connection sends, and the session is given up at the next
    /// `next` (what it had not acknowledged is sent again on the next connection).
    stalled: bool,
}

impl MqttSession {
    /// Disconnects and waits for the event loop to end (the caller bounds this), adding to
    /// `messages` each chatload message that came on the way.
    async fn close_counting(&mut self, messages: &mut u64) {
        self.client.disconnect();
        while let Some(e) = self.events.recv().await {
            match e {
                Incoming::Message(_) => *messages += 1,
                Incoming::Lost { .. } => break,
                _ => {}
            }
        }
    }
}

impl Drop for MqttSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn topic(t: &crate::scenario::template::Template, user: u32, group: u32) -> String {
    t.render(false, |s| match s {
        Slot::User | Slot::To => Value::Number(user as u64),
        Slot::Group => Value::Number(group as u64),
        _ => Value::Empty,
    })
}

/// Small frames must leave at once: without TCP_NODELAY a publish can wait ~40 ms for the
/// peer's delayed ACK, and that wait would show up as broker latency.
fn network_options() -> rumqttc::NetworkOptions {
    let mut n = rumqttc::NetworkOptions::new();
    n.set_tcp_nodelay(true);
    n
}

impl MqttSetup {
    /// Whether the broker keeps sessions across connections (then every user's session is
    /// opened once before the run, so messages to a user not yet online wait for it, as
    /// they do for someone who installed the app long ago).
    pub fn persistent(&self) -> bool {
        !self.target.clean_session
    }

    /// Opens and cleanly closes `user`'s session so the broker keeps its subscriptions.
    ///
    /// Returns how many chatload messages the broker handed over on the way: kept in the
    /// session from before this run (which has sent nothing yet), and acknowledged here, so
    /// the run's books would never see them otherwise.
    pub async fn register(
        &self,
        user: u32,
        groups: &[u32],
        timeout: Duration,
    ) -> Result<u64, ConnectError> {
        let mut s = self.connect(user, groups, timeout).await?;
        let mut handed_over = 0;
        let _ = tokio::time::timeout(timeout, s.close_counting(&mut handed_over)).await;
        Ok(handed_over)
    }

    /// Connects `user`, subscribes to its topic and `groups`' topics, and returns once the
    /// broker confirmed the subscription.
    pub async fn connect(
        &self,
        user: u32,
        groups: &[u32],
        timeout: Duration,
    ) -> Result<MqttSession, ConnectError> {
        let t = &self.target;
        let client_id = topic(&t.client_id, user, 0);
        let keep_alive = Duration::from_micros(t.keep_alive.0).max(Duration::from_secs(1));
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        let awaiting_pkid = Arc::new(Mutex::new(VecDeque::new()));
        let state = LoopState {
            user,
            awaiting_pkid: awaiting_pkid.clone(),
            in_flight: FxHashMap::default(),
            ready: Some(ready_tx),
            tx,
        };
        let transport = || match &self.tls {
            Some(tls) => rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
                tls.client_config(),
            )),
            None => rumqttc::Transport::tcp(),
        };
        let (client, task) = match t.version {
            MqttVersion::V311 => {
                let mut o = rumqttc::MqttOptions::new(client_id, self.host.clone(), self.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_session(t.clean_session)
                    .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                    .set_inflight(INFLIGHT)
                    .set_transport(transport());
                if let (Some(u), password) = self.login_of(user) {
                    o.set_credentials(u, password.unwrap_or_default());
                }
                let (c, mut el) = rumqttc::AsyncClient::new(o, EVENT_QUEUE);
                el.set_network_options(network_options());
                (Client::V4(c), tokio::spawn(run4(el, state)))
            }
            MqttVersion::V5 => {
                let mut o = m5::MqttOptions::new(client_id, self.host.clone(), self.port);
                o.set_keep_alive(keep_alive)
                    .set_clean_start(t.clean_session)
                    .set_max_packet_size(Some(MAX_PACKET as u32))
                    .set_outgoing_inflight_upper_limit(INFLIGHT)
                    .set_transport(transport());
                if !t.clean_session {
                    // A v5 session ends at disconnect unless it is given an expiry.
                    o.set_session_expiry_interval(Some(3600));
                }
                if let (Some(u), password) = self.login_of(user) {
                    o.set_credentials(u, password.unwrap_or_default());
                }
                o.set_network_options(network_options());
                let (c, el) = m5::AsyncClient::new(o, EVENT_QUEUE);
                (Client::V5(c), tokio::spawn(run5(el, state)))
            }
        };
        let mut topics = vec![topic(&t.user_topic, user, 0)];
        topics.extend(groups.iter().map(|g| topic(&t.group_topic, user, *g)));
        let session = MqttSession {
            user,
            target: t.clone(),
            client,
            events,
            awaiting_pkid,
            task,
            stalled: false,
        };
        if !session.client.subscribe(&topics, t.qos) {
            // The event loop ends at once when the broker refuses the log-in, and the
            // client then takes nothing more: the loop's own reason is the true one.
            return Err(
                match tokio::time::timeout(Duration::from_secs(1), ready_rx).await {
                    Ok(Ok(Err(e))) => e,
                    _ => ConnectError::new(
                        ErrorKind::ConnectFailed,
                        "the MQTT client would not take the subscription",
                    ),
                },
            );
        }
        match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(session),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(ConnectError::new(
                ErrorKind::ConnectFailed,
                "the MQTT session ended while connecting",
            )),
            Err(_) => Err(ConnectError::new(
                ErrorKind::ConnectTimeout,
                format!("no CONNACK and SUBACK within {timeout:?}"),
            )),
        }
    }
}

impl MqttSession {
    /// Publishes to `to`'s topic; a full request queue marks the session stalled (given up
    /// at the next `next`) rather than failing this one publish.
    fn publish_to_user(&mut self, to: u32, qos: u8, payload: String) {
        let topic = topic(&self.target.user_topic, to, 0);
        let ok = self.client.publish(topic, qos, payload.into_bytes());
        self.stalled |= !ok;
    }
}

impl Session for MqttSession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        let qos = self.target.qos;
        match out {
            Outgoing::Message {
                id,
                from,
                to,
                t,
                s,
                body,
                media,
            } => {
                let (topic, group, to_user) = match to {
                    Recipient::User(u) => (topic(&self.target.user_topic, u, 0), None, u),
                    Recipient::Group(g) => (topic(&self.target.group_topic, from, g), Some(g), 0),
                    Recipient::Business(_) => return false,
                };
                let kind = (media.kind != protocol::MediaKind::Text).then(|| media.kind.name());
                let frame = protocol::msg(&protocol::Delivery {
                    seq: 0,
                    id,
                    from,
                    to: to_user,
                    group,
                    intended_us: t,
                    sent_us: s,
                    body,
                    wamid: 0,
                    kind,
                    media_bytes: media.bytes as u64,
                });
                if qos == 1
                    && let Ok(mut q) = self.awaiting_pkid.lock()
                {
                    q.push_back(id);
                }
                let ok = self.client.publish(topic, qos, frame.into_bytes());
                if !ok
                    && qos == 1
                    && let Ok(mut q) = self.awaiting_pkid.lock()
                {
                    q.pop_back();
                }
                self.stalled |= !ok;
                true
            }
            Outgoing::Delivered(d) if self.target.receipts && d.group.is_none() => {
                self.publish_to_user(
                    d.from,
                    0,
                    protocol::receipt(d.id, self.user, d.t.unwrap_or(0), d.s.unwrap_or(0)),
                );
                true
            }
            Outgoing::Read { id, from, r, .. } => {
                self.publish_to_user(from, 0, protocol::read_receipt(id, self.user, r));
                true
            }
            Outgoing::Typing { from, to, r } => {
                self.publish_to_user(to, 0, protocol::typing_seen(from, r));
                true
            }
            Outgoing::Presence {
                from,
                state,
                s,
                contacts,
            } => {
                let frame = protocol::presence_seen(from, state, s);
                // Every contact gets its copy even when one publish is refused.
                for c in contacts {
                    self.publish_to_user(*c, 0, frame.clone());
                }
                true
            }
            // Keep-alive is MQTT's own (PINGREQ); history has no MQTT equivalent.
            Outgoing::Delivered(_) | Outgoing::Heartbeat | Outgoing::History { .. } => false,
        }
    }

    async fn next(&mut self) -> Incoming {
        if self.stalled {
            // What the event loop said first (its end, when it ended, is not a stall).
            if let Ok(e) = self.events.try_recv() {
                return e;
            }
            if !self.task.is_finished() {
                return Incoming::Lost {
                    kind: ErrorKind::TargetNotReading,
                    detail: format!(
                        "the broker stopped taking publishes: {EVENT_QUEUE} waited to be written (QoS 1: behind {INFLIGHT} unacknowledged)"
                    ),
                };
            }
        }
        match self.events.recv().await {
            Some(e) => e,
            None => Incoming::Lost {
                kind: ErrorKind::ConnectionClosed,
                detail: "the MQTT session ended".into(),
            },
        }
    }

    async fn close(&mut self) {
        self.close_counting(&mut 0).await;
    }

    fn confirms_sends(&self) -> bool {
        self.target.qos == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884, false))
        );
        assert_eq!(
            parse_url("mqtts://broker.example"),
            Some(("broker.example".into(), 8883, true))
        );
        assert_eq!(
            parse_url("mqtt://[::1]:1883"),
            Some(("::1".into(), 1883, false))
        );
        assert_eq!(parse_url("mqtt://"), None);
    }
}

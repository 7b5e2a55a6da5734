//! MQTT 3.1.1 and 5: each virtual user is one client that subscribes to its own topic and
//! its groups' topics and publishes to its recipients'. Payloads are chatload frames, so the
//! receiver reads the sender's timestamps and latency is end to end (publisher → broker →
//! subscriber), ending when the delivery reached this machine. A PUBACK (QoS 1) is the
//! send's confirmation. Owns the set-up of a user's session and what the virtual user says
//! in MQTT; the connection itself is `mqtt_session`'s, the packets `mqtt_wire`'s, and the
//! broker is the user's.

use super::authority::Authority;
use super::byte_stream::ByteStream;
pub use super::mqtt_session::MqttSession;
use super::mqtt_session::Opening;
use super::mqtt_wire::Hello;
use super::stamped_tcp::StampedTcp;
use super::{ConnectError, Incoming, Outgoing, Session, tls::TlsContext};
use crate::metrics::ErrorKind;
use crate::protocol::{self, Recipient};
use crate::scenario::target::{MqttTarget, MqttVersion};
use crate::scenario::template::{Slot, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Largest packet either way: chatload's largest body plus its frame.
const MAX_PACKET: usize = protocol::MAX_BODY + 4096;

/// Everything needed to open one user's MQTT session.
pub struct MqttSetup {
    pub target: Arc<MqttTarget>,
    /// The broker's host (an IPv6 address without brackets: the name TLS checks) and port.
    pub broker: Authority,
    /// `host:port` to connect to.
    pub address: String,
    pub tls: Option<TlsContext>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-user credentials from a file, when the scenario names one.
    pub per_user: Option<Arc<crate::secrets::Credentials>>,
    /// Local addresses users' connections come from (`[target] source_addresses`, or
    /// spread automatically past 25,000 connections to loopback).
    pub sources: super::source::SourcePool,
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
        target.version = MqttVersion::V311;
        MqttSetup {
            target: Arc::new(target),
            broker: self.broker.clone(),
            address: self.address.clone(),
            tls: self.tls.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            per_user: self.per_user.clone(),
            sources: self.sources.clone(),
        }
    }

    pub fn is_v5(&self) -> bool {
        self.target.version == MqttVersion::V5
    }
}

impl std::fmt::Debug for MqttSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MqttSetup({})", self.address)
    }
}

/// Host and port of an `mqtt://` or `mqtts://` URL (`tcp://` and `ssl://` too); the scheme
/// says whether TLS is used.
pub fn parse_url(url: &str) -> Option<(Authority, bool)> {
    let (scheme, _) = url.trim().split_once("://")?;
    let tls = match scheme {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        _ => return None,
    };
    Some((Authority::of(url)?, tls))
}

fn topic(t: &crate::scenario::template::Template, user: u32, group: u32) -> String {
    t.render(false, |s| match s {
        Slot::User | Slot::To => Value::Number(user as u64),
        Slot::Group => Value::Number(group as u64),
        _ => Value::Empty,
    })
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
        let deadline = Instant::now() + timeout;
        let address = &self.address;
        let source = self.sources.for_user(user);
        let tcp = tokio::time::timeout_at(deadline, super::source::connect(address, source))
            .await
            .map_err(|_| {
                ConnectError::new(
                    ErrorKind::ConnectTimeout,
                    format!("no TCP connection to {address} within {timeout:?}"),
                )
            })?
            .map_err(ConnectError::io)?;
        let tcp = StampedTcp::new(tcp).map_err(ConnectError::io)?;
        let stream = match &self.tls {
            None => ByteStream::Plain(tcp),
            Some(tls) => tokio::time::timeout_at(
                deadline,
                ByteStream::tls(tcp, tls.client_config(), &self.broker.host),
            )
            .await
            .map_err(|_| {
                ConnectError::new(
                    ErrorKind::ConnectTimeout,
                    format!(
                        "the TCP connection was accepted, but the TLS handshake did not finish within {timeout:?}"
                    ),
                )
            })??,
        };
        let client_id = topic(&t.client_id, user, 0);
        let keep_alive = Duration::from_micros(t.keep_alive.0).max(Duration::from_secs(1));
        let (username, password) = self.login_of(user);
        let mut topics = vec![topic(&t.user_topic, user, 0)];
        topics.extend(groups.iter().map(|g| topic(&t.group_topic, user, *g)));
        let opening = Opening {
            user,
            target: t.clone(),
            hello: Hello {
                client_id: &client_id,
                keep_alive_s: keep_alive.as_secs().min(u64::from(u16::MAX)) as u16,
                clean: t.clean_session,
                username: username.as_deref(),
                password: password.as_deref(),
                // A v5 session ends at disconnect unless it is given an expiry.
                session_expiry_s: (!t.clean_session).then_some(3600),
                max_packet: MAX_PACKET as u32,
            },
            topics,
        };
        MqttSession::open(stream, opening, keep_alive, deadline, timeout).await
    }
}

impl MqttSession {
    /// Publishes a signal (QoS 0) to `to`'s topic.
    fn publish_to_user(&mut self, to: u32, frame: &str) {
        let topic = topic(&self.target().user_topic, to, 0);
        self.publish(&topic, frame);
    }
}

impl Session for MqttSession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        let target = self.target();
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
                    Recipient::User(u) => (topic(&target.user_topic, u, 0), None, u),
                    Recipient::Group(g) => (topic(&target.group_topic, from, g), Some(g), 0),
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
                self.publish_message(topic, frame, id);
                true
            }
            Outgoing::Delivered(d) if target.receipts && d.group.is_none() => {
                let user = self.user();
                let frame = protocol::receipt(d.id, user, d.t.unwrap_or(0), d.s.unwrap_or(0));
                self.publish_to_user(d.from, &frame);
                true
            }
            Outgoing::Read { id, from, r, .. } => {
                let frame = protocol::read_receipt(id, self.user(), r);
                self.publish_to_user(from, &frame);
                true
            }
            Outgoing::Typing { from, to, r } => {
                self.publish_to_user(to, &protocol::typing_seen(from, r));
                true
            }
            Outgoing::Presence {
                from,
                state,
                s,
                contacts,
            } => {
                let frame = protocol::presence_seen(from, state, s);
                for c in contacts {
                    self.publish_to_user(*c, &frame);
                }
                true
            }
            // Keep-alive is MQTT's own (PINGREQ); history has no MQTT equivalent.
            Outgoing::Delivered(_) | Outgoing::Heartbeat | Outgoing::History { .. } => false,
        }
    }

    async fn next(&mut self) -> Incoming {
        self.next_event().await
    }

    async fn close(&mut self) {
        self.close_counting(&mut 0).await;
    }

    fn confirms_sends(&self) -> bool {
        MqttSession::confirms_sends(self)
    }

    fn waited(&self) -> Option<Duration> {
        MqttSession::waited(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_tls() {
        let parsed = |url: &str| parse_url(url).map(|(a, tls)| (a.address(), tls));
        assert_eq!(
            parsed("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1:1884".into(), false))
        );
        assert_eq!(
            parsed("mqtts://broker.example"),
            Some(("broker.example:8883".into(), true))
        );
        assert_eq!(parsed("ssl://[::1]"), Some(("[::1]:8883".into(), true)));
        assert_eq!(parsed("mqtt://[::1]"), Some(("[::1]:1883".into(), false)));
        assert_eq!(parsed("mqtt://"), None);
        // Not an MQTT scheme: said at set-up, not tried as MQTT on some port.
        assert_eq!(parsed("ws://h:8080"), None);
    }
}

//! The MQTT client's event loop, for 3.1.1 and 5 alike: what rumqttc's loop sees becomes
//! chatload's events (deliveries, PUBACKs paired with message ids through packet ids,
//! refusals, a lost connection). Owns that translation; the session and its publishes are
//! `mqtt`'s.

use super::native::interpret;
use super::{ConnectError, Incoming};
use crate::metrics::ErrorKind;
use rumqttc::v5 as m5;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// What the event loop saw, whichever protocol version.
pub(super) enum Seen<'a> {
    Connected,
    Subscribed { refused: bool },
    Publish(&'a [u8]),
    Published { pkid: u16 },
    PubAck { pkid: u16, refused: Option<String> },
    Other,
}

/// Shared by both versions' event loops: pairs packet ids with message ids and turns what
/// was seen into events. Returns false when the session cannot go on.
pub(super) struct LoopState {
    pub(super) user: u32,
    pub(super) awaiting_pkid: Arc<Mutex<VecDeque<u64>>>,
    pub(super) in_flight: FxHashMap<u16, u64>,
    pub(super) ready: Option<oneshot::Sender<Result<(), ConnectError>>>,
    pub(super) tx: mpsc::Sender<Incoming>,
}

impl LoopState {
    async fn on(&mut self, seen: Seen<'_>) -> bool {
        let event = match seen {
            Seen::Connected | Seen::Other => return true,
            Seen::Subscribed { refused: false } => {
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Ok(()));
                }
                return true;
            }
            Seen::Subscribed { refused: true } => {
                let e = ConnectError::new(
                    ErrorKind::BrokerRefused,
                    "the broker refused a subscription (SUBACK failure)",
                );
                match self.ready.take() {
                    Some(r) => {
                        let _ = r.send(Err(e));
                        return false;
                    }
                    None => Incoming::ServerError(e.detail),
                }
            }
            Seen::Publish(payload) => match std::str::from_utf8(payload) {
                Ok(text) => match interpret(text) {
                    // MQTT 3.1.1 sends our own group messages back to us.
                    Incoming::Message(d) if d.from == self.user => return true,
                    other => other,
                },
                Err(_) => Incoming::Undecodable("a publish whose payload is not UTF-8".into()),
            },
            Seen::Published { pkid } => {
                if pkid != 0
                    && let Some(id) = self
                        .awaiting_pkid
                        .lock()
                        .ok()
                        .and_then(|mut q| q.pop_front())
                {
                    self.in_flight.insert(pkid, id);
                }
                return true;
            }
            Seen::PubAck { pkid, refused } => match (self.in_flight.remove(&pkid), refused) {
                (Some(id), None) => Incoming::Accepted { id },
                (Some(id), Some(reason)) => Incoming::Rejected {
                    id,
                    kind: ErrorKind::BrokerRefused,
                    detail: format!("the broker refused a publish: {reason}"),
                },
                (None, _) => return true,
            },
        };
        self.tx.send(event).await.is_ok()
    }

    async fn failed(&mut self, kind: ErrorKind, detail: String) {
        match self.ready.take() {
            Some(r) => {
                let _ = r.send(Err(ConnectError::new(kind, detail)));
            }
            None => {
                let _ = self.tx.send(Incoming::Lost { kind, detail }).await;
            }
        }
    }
}

fn classify4(e: &rumqttc::ConnectionError) -> ErrorKind {
    use rumqttc::ConnectionError as E;
    match e {
        E::Io(io) => super::connector::classify_io(io),
        E::MqttState(rumqttc::StateError::Io(io)) => super::connector::classify_io(io),
        E::MqttState(rumqttc::StateError::ConnectionAborted) => ErrorKind::ConnectionReset,
        E::MqttState(rumqttc::StateError::AwaitPingResp) => ErrorKind::RequestTimeout,
        E::MqttState(_) | E::NotConnAck(_) => ErrorKind::Protocol,
        E::Tls(_) => ErrorKind::Tls,
        E::ConnectionRefused(_) => ErrorKind::BrokerRefused,
        E::NetworkTimeout | E::FlushTimeout => ErrorKind::ConnectTimeout,
        E::RequestsDone => ErrorKind::ConnectionClosed,
    }
}

fn classify5(e: &m5::ConnectionError) -> ErrorKind {
    use m5::ConnectionError as E;
    match e {
        E::Io(io) => super::connector::classify_io(io),
        E::MqttState(m5::StateError::Io(io)) => super::connector::classify_io(io),
        E::MqttState(m5::StateError::ConnectionAborted) => ErrorKind::ConnectionReset,
        E::MqttState(m5::StateError::AwaitPingResp) => ErrorKind::RequestTimeout,
        E::Tls(_) => ErrorKind::Tls,
        E::ConnectionRefused(_) => ErrorKind::BrokerRefused,
        E::Timeout(_) => ErrorKind::ConnectTimeout,
        E::RequestsDone => ErrorKind::ConnectionClosed,
        _ => ErrorKind::Protocol,
    }
}

pub(super) async fn run4(mut el: rumqttc::EventLoop, mut st: LoopState) {
    use rumqttc::{Event, Outgoing as Out, Packet};
    loop {
        let (keep_going, failure) = match el.poll().await {
            Ok(ev) => {
                let seen = match &ev {
                    Event::Incoming(Packet::ConnAck(_)) => Seen::Connected,
                    Event::Incoming(Packet::SubAck(s)) => Seen::Subscribed {
                        refused: s
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)),
                    },
                    Event::Incoming(Packet::Publish(p)) => Seen::Publish(&p.payload),
                    Event::Incoming(Packet::PubAck(a)) => Seen::PubAck {
                        pkid: a.pkid,
                        refused: None,
                    },
                    Event::Incoming(Packet::Disconnect) => {
                        st.failed(
                            ErrorKind::ConnectionClosed,
                            "the broker sent DISCONNECT".into(),
                        )
                        .await;
                        return;
                    }
                    Event::Outgoing(Out::Publish(pkid)) => Seen::Published { pkid: *pkid },
                    _ => Seen::Other,
                };
                (st.on(seen).await, None)
            }
            Err(e) => (false, Some((classify4(&e), e.to_string()))),
        };
        if let Some((kind, detail)) = failure {
            st.failed(kind, detail).await;
            return;
        }
        if !keep_going {
            return;
        }
    }
}

pub(super) async fn run5(mut el: m5::EventLoop, mut st: LoopState) {
    use m5::Event;
    use m5::mqttbytes::v5::{Packet, PubAckReason, SubscribeReasonCode};
    use rumqttc::Outgoing as Out;
    loop {
        let (keep_going, failure) = match el.poll().await {
            Ok(ev) => {
                let seen = match &ev {
                    Event::Incoming(Packet::ConnAck(_)) => Seen::Connected,
                    Event::Incoming(Packet::SubAck(s)) => Seen::Subscribed {
                        refused: s
                            .return_codes
                            .iter()
                            .any(|c| !matches!(c, SubscribeReasonCode::Success(_))),
                    },
                    Event::Incoming(Packet::Publish(p)) => Seen::Publish(&p.payload),
                    Event::Incoming(Packet::PubAck(a)) => Seen::PubAck {
                        pkid: a.pkid,
                        refused: match a.reason {
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => None,
                            ref r => Some(format!("{r:?}")),
                        },
                    },
                    Event::Incoming(Packet::Disconnect(d)) => {
                        st.failed(
                            ErrorKind::ConnectionClosed,
                            format!("the broker sent DISCONNECT ({:?})", d.reason_code),
                        )
                        .await;
                        return;
                    }
                    Event::Outgoing(Out::Publish(pkid)) => Seen::Published { pkid: *pkid },
                    _ => Seen::Other,
                };
                (st.on(seen).await, None)
            }
            Err(e) => (false, Some((classify5(&e), e.to_string()))),
        };
        if let Some((kind, detail)) = failure {
            st.failed(kind, detail).await;
            return;
        }
        if !keep_going {
            return;
        }
    }
}

//! One user's MQTT connection once its TCP (and TLS) connection is open: the CONNECT and
//! SUBSCRIBE handshake, then what the virtual user says becomes PUBLISHes and what the
//! broker sends becomes events. The connection is read on its own stamped socket, so every
//! delivery carries the time it reached this machine (the client's own wait is `read_lag`),
//! and no task or channel stands between the socket and the virtual user. Owns packet ids,
//! the QoS 1 window, keep-alive and every buffer's bound; not the set-up (`mqtt`) nor the
//! bytes of each packet (`mqtt_wire`).

use super::byte_stream::ByteStream;
use super::connector::classify_io;
use super::mqtt_wire::{self as wire, Seen, Version};
use super::native::interpret;
use super::{ConnectError, Incoming, MAX_UNWRITTEN};
use crate::metrics::ErrorKind;
use crate::scenario::target::{MqttTarget, MqttVersion};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// QoS 1 publishes a connection may have unacknowledged (rumqttc's MQTT 3.1.1 default, and
/// less when an MQTT 5 broker asks for less).
pub const INFLIGHT: usize = 100;
/// QoS 1 publishes held for a place in that window; one more and the broker is taken to
/// have stopped taking publishes.
pub const HELD: usize = 256;
/// Deliveries a broker may hand over before it confirms the subscription (what a persistent
/// session kept); beyond it the connection is given up rather than held in memory.
const EARLY_LIMIT: usize = 4096;
/// What a read asks for, and what the read buffer goes back to once a long packet is read.
const READ_CHUNK: usize = 4096;
const READ_KEEP: usize = 16 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ConnAck,
    SubAck,
    Ready,
}

/// A QoS 1 publish waiting for a place in the window: topic, payload, chatload's id.
type Held = (String, String, u64);

pub struct MqttSession {
    user: u32,
    target: Arc<MqttTarget>,
    version: Version,
    qos: u8,
    stream: ByteStream,
    /// Read bytes; `start..filled` is not yet taken.
    inbuf: Vec<u8>,
    start: usize,
    filled: usize,
    /// The largest packet taken from the broker.
    max_packet: usize,
    /// Bytes for the broker; `written..` is not yet written.
    out: Vec<u8>,
    written: usize,
    unflushed: bool,
    phase: Phase,
    /// The filters to subscribe to once the broker has accepted the connection.
    topics: Vec<String>,
    next_pkid: u16,
    /// QoS 1 publishes sent and not yet acknowledged: packet id → chatload's id.
    in_flight: FxHashMap<u16, u64>,
    window: usize,
    held: VecDeque<Held>,
    /// Events that came before the session was handed to its user.
    events: VecDeque<Incoming>,
    /// Why the session cannot go on, said again to whoever asks.
    failure: Option<Incoming>,
    keep_alive: Duration,
    ping: Pin<Box<Sleep>>,
    last_sent: Instant,
    ping_sent: bool,
    /// DISCONNECT is queued: nothing more may be sent, nor acknowledged.
    goodbye: bool,
}

/// What a packet asks of the session, once its payload (if any) is read.
enum Step {
    Publish {
        qos: u8,
        pkid: u16,
        event: Option<Incoming>,
    },
    Seen(Seen),
}

/// A delivery's payload as an event; `None` for our own group message, which MQTT 3.1.1
/// brokers send back to its sender.
fn delivery(user: u32, payload: &[u8]) -> Option<Incoming> {
    match std::str::from_utf8(payload) {
        Ok(text) => match interpret(text) {
            Incoming::Message(d) if d.from == user => None,
            other => Some(other),
        },
        Err(_) => Some(Incoming::Undecodable(
            "a publish whose payload is not UTF-8".into(),
        )),
    }
}

/// What a session opens with: whose it is, what its CONNECT says, what it subscribes to.
pub struct Opening<'a> {
    pub user: u32,
    pub target: Arc<MqttTarget>,
    pub hello: wire::Hello<'a>,
    pub topics: Vec<String>,
}

impl MqttSession {
    /// Says CONNECT, then SUBSCRIBE once accepted, and returns when the broker confirmed
    /// the subscription, by `deadline`; what it handed over meanwhile is kept for `next`.
    pub async fn open(
        stream: ByteStream,
        o: Opening<'_>,
        keep_alive: Duration,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<MqttSession, ConnectError> {
        let version = match o.target.version {
            MqttVersion::V311 => Version::V311,
            MqttVersion::V5 => Version::V5,
        };
        let mut s = MqttSession {
            user: o.user,
            qos: o.target.qos,
            target: o.target,
            version,
            stream,
            inbuf: vec![0; READ_CHUNK],
            start: 0,
            filled: 0,
            max_packet: o.hello.max_packet as usize,
            out: Vec::new(),
            written: 0,
            unflushed: false,
            phase: Phase::ConnAck,
            topics: o.topics,
            next_pkid: 1,
            in_flight: FxHashMap::default(),
            window: INFLIGHT,
            held: VecDeque::new(),
            events: VecDeque::new(),
            failure: None,
            keep_alive,
            ping: Box::pin(tokio::time::sleep_until(deadline)),
            last_sent: Instant::now(),
            ping_sent: false,
            goodbye: false,
        };
        wire::put_connect(&mut s.out, s.version, &o.hello);
        loop {
            let Ok(event) = tokio::time::timeout_at(deadline, s.step()).await else {
                let waited = match s.phase {
                    Phase::ConnAck => "CONNACK",
                    _ => "SUBACK",
                };
                return Err(ConnectError::new(
                    ErrorKind::ConnectTimeout,
                    format!(
                        "the TCP connection was accepted, but no {waited} came within {timeout:?}"
                    ),
                ));
            };
            match event {
                Incoming::Lost { kind, detail } => return Err(ConnectError::new(kind, detail)),
                Incoming::Nothing => {}
                e if s.events.len() < EARLY_LIMIT => s.events.push_back(e),
                _ => {
                    return Err(ConnectError::new(
                        ErrorKind::Protocol,
                        format!(
                            "the broker handed over more than {EARLY_LIMIT} messages before it confirmed the subscription"
                        ),
                    ));
                }
            }
            if s.phase == Phase::Ready {
                s.ping.as_mut().reset(Instant::now() + s.keep_alive);
                return Ok(s);
            }
        }
    }

    fn fail(&mut self, kind: ErrorKind, detail: String) -> Incoming {
        let lost = Incoming::Lost { kind, detail };
        self.failure = Some(lost.clone());
        lost
    }

    fn pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Queues a publish of chatload's message `id` (QoS 1: paired with its PUBACK).
    pub fn publish_message(&mut self, topic: String, frame: String, id: u64) {
        if self.qos == 0 {
            self.publish(&topic, &frame);
        } else if self.in_flight.len() < self.window {
            self.send_qos1(&topic, &frame, id);
        } else if self.held.len() < HELD {
            self.held.push_back((topic, frame, id));
        } else if self.failure.is_none() {
            let window = self.window;
            self.fail(
                ErrorKind::TargetNotReading,
                format!(
                    "the broker stopped taking publishes: {HELD} waited to be written (QoS 1: behind {window} unacknowledged)"
                ),
            );
        }
    }

    fn send_qos1(&mut self, topic: &str, frame: &str, id: u64) {
        if self.failure.is_some() || self.goodbye {
            return;
        }
        let pkid = self.pkid();
        self.in_flight.insert(pkid, id);
        wire::put_publish(
            &mut self.out,
            self.version,
            topic,
            1,
            pkid,
            frame.as_bytes(),
        );
        self.check_unwritten();
    }

    /// Queues a QoS 0 publish (receipts, typing, presence).
    pub fn publish(&mut self, topic: &str, frame: &str) {
        if self.failure.is_some() || self.goodbye {
            return;
        }
        wire::put_publish(&mut self.out, self.version, topic, 0, 0, frame.as_bytes());
        self.check_unwritten();
    }

    fn check_unwritten(&mut self) {
        let unwritten = self.out.len() - self.written;
        if unwritten > MAX_UNWRITTEN && self.failure.is_none() {
            self.fail(
                ErrorKind::TargetNotReading,
                format!(
                    "the broker stopped taking publishes: {unwritten} bytes waited to be written beyond what the connection took"
                ),
            );
        }
    }

    /// The next event: one kept from the handshake, one read, or why the session ended.
    pub async fn next_event(&mut self) -> Incoming {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        if let Some(e) = &self.failure {
            return e.clone();
        }
        self.step().await
    }

    /// Writes what is queued, then takes a packet already read, else reads until one is
    /// whole (or the session fails). Cancel-safe: a write or a read either happened or not.
    async fn step(&mut self) -> Incoming {
        std::future::poll_fn(|cx| self.poll_io(cx)).await
    }

    fn poll_io(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        if let Some(e) = &self.failure {
            return Poll::Ready(e.clone());
        }
        if let Poll::Ready(e) = self.poll_keep_alive(cx) {
            return Poll::Ready(e);
        }
        loop {
            // Acknowledgements (and the SUBSCRIBE) that packets asked for leave before the
            // next read.
            if let Err(e) = self.poll_write(cx) {
                return Poll::Ready(e);
            }
            let queued = self.out.len();
            if let Some(e) = self.take_packet() {
                // What the packet asked for (its acknowledgement, a held publish it let go)
                // leaves now rather than at the next call; a failure is said next time.
                let _ = self.poll_write(cx);
                return Poll::Ready(e);
            }
            if self.out.len() > queued {
                continue;
            }
            if self.filled == self.inbuf.len() {
                if self.start > 0 {
                    self.inbuf.copy_within(self.start..self.filled, 0);
                    self.filled -= self.start;
                    self.start = 0;
                } else {
                    // A packet longer than the buffer: `packet_len` has bounded it.
                    let grown = (self.inbuf.len() * 2).min(self.max_packet.max(READ_CHUNK));
                    self.inbuf.resize(grown, 0);
                }
            }
            let mut buf = ReadBuf::new(&mut self.inbuf[self.filled..]);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(self.fail(classify_io(&e), e.to_string()));
                }
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    if n == 0 {
                        let detail = if self.goodbye {
                            "the broker closed the connection after DISCONNECT"
                        } else {
                            "the broker closed the connection"
                        };
                        return Poll::Ready(self.fail(ErrorKind::ConnectionClosed, detail.into()));
                    }
                    self.filled += n;
                }
            }
        }
    }

    /// Writes what is queued, as far as the socket takes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), Incoming> {
        while self.written < self.out.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.out[self.written..]) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    return Err(self.fail(
                        ErrorKind::ConnectionReset,
                        "the connection took no more bytes".into(),
                    ));
                }
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(e)) => return Err(self.fail(classify_io(&e), e.to_string())),
            }
        }
        if self.unflushed {
            // Plain TCP has nothing to flush; TLS may hold records the socket did not take.
            match Pin::new(&mut self.stream).poll_flush(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(e)) => return Err(self.fail(classify_io(&e), e.to_string())),
                Poll::Ready(Ok(())) => {}
            }
            self.unflushed = false;
            self.out.clear();
            self.written = 0;
            self.last_sent = Instant::now();
        }
        Ok(())
    }

    /// MQTT's keep-alive: a PINGREQ when nothing was sent for `keep_alive`, and the session
    /// given up when the broker has not answered the last one by the next.
    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        if self.phase != Phase::Ready || self.goodbye {
            return Poll::Pending;
        }
        while self.ping.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.ping_sent {
                let keep_alive = self.keep_alive;
                return Poll::Ready(self.fail(
                    ErrorKind::RequestTimeout,
                    format!(
                        "the broker did not answer a PINGREQ within the keep-alive ({keep_alive:?})"
                    ),
                ));
            }
            let due = self.last_sent + self.keep_alive;
            if due <= now {
                wire::put_pingreq(&mut self.out);
                self.ping_sent = true;
                self.ping.as_mut().reset(now + self.keep_alive);
            } else {
                self.ping.as_mut().reset(due);
            }
        }
        Poll::Pending
    }

    /// Takes the next whole packet from what was read and acts on it; `None` once no whole
    /// packet is left.
    fn take_packet(&mut self) -> Option<Incoming> {
        loop {
            let len = match wire::packet_len(&self.inbuf[self.start..self.filled], self.max_packet)
            {
                Ok(Some(len)) => len,
                Ok(None) => {
                    if self.start == self.filled {
                        self.start = 0;
                        self.filled = 0;
                        if self.inbuf.len() > READ_KEEP {
                            self.inbuf = vec![0; READ_CHUNK];
                        }
                    }
                    return None;
                }
                Err(e) => return Some(self.fail(ErrorKind::Protocol, e)),
            };
            let packet = &self.inbuf[self.start..self.start + len];
            let step = match wire::decode(self.version, packet) {
                Ok(Seen::Publish { qos, pkid, payload }) => Step::Publish {
                    qos,
                    pkid,
                    event: delivery(self.user, &packet[payload]),
                },
                Ok(seen) => Step::Seen(seen),
                Err(e) => return Some(self.fail(ErrorKind::Protocol, e)),
            };
            self.start += len;
            if let Some(e) = self.act(step) {
                return Some(e);
            }
        }
    }

    fn act(&mut self, step: Step) -> Option<Incoming> {
        let seen = match step {
            Step::Publish { qos, pkid, event } => {
                // After DISCONNECT nothing is acknowledged: the broker keeps it.
                if !self.goodbye {
                    match qos {
                        1 => wire::put_puback(&mut self.out, pkid),
                        2 => wire::put_pubrec(&mut self.out, pkid),
                        _ => {}
                    }
                }
                return event;
            }
            Step::Seen(seen) => seen,
        };
        match seen {
            Seen::ConnAck {
                refused: Some(r), ..
            } => Some(self.fail(ErrorKind::BrokerRefused, format!("CONNACK refused: {r}"))),
            Seen::ConnAck {
                refused: None,
                receive_max,
                server_keep_alive,
            } => {
                if self.phase == Phase::ConnAck {
                    if let Some(m) = receive_max {
                        self.window = usize::from(m).clamp(1, INFLIGHT);
                    }
                    // MQTT 5 §3.2.2.3.14: the broker's keep-alive replaces the client's.
                    if let Some(k) = server_keep_alive.filter(|k| *k > 0) {
                        self.keep_alive = Duration::from_secs(u64::from(k));
                    }
                    self.phase = Phase::SubAck;
                    let pkid = self.pkid();
                    let topics = std::mem::take(&mut self.topics);
                    wire::put_subscribe(&mut self.out, self.version, pkid, &topics, self.qos);
                }
                None
            }
            Seen::SubAck { refused, .. } if self.phase == Phase::SubAck => {
                if refused {
                    return Some(self.fail(
                        ErrorKind::BrokerRefused,
                        "the broker refused a subscription (SUBACK failure)".into(),
                    ));
                }
                self.phase = Phase::Ready;
                // Said, so that the handshake sees it is over.
                Some(Incoming::Nothing)
            }
            Seen::PubAck { pkid, refused } => {
                let id = self.in_flight.remove(&pkid)?;
                if let Some((topic, frame, held)) = self.held.pop_front() {
                    self.send_qos1(&topic, &frame, held);
                }
                Some(match refused {
                    None => Incoming::Accepted { id },
                    Some(reason) => Incoming::Rejected {
                        id,
                        kind: ErrorKind::BrokerRefused,
                        detail: format!("the broker refused a publish: {reason}"),
                    },
                })
            }
            Seen::PubRel { pkid } => {
                if !self.goodbye {
                    wire::put_pubcomp(&mut self.out, pkid);
                }
                None
            }
            Seen::PingResp => {
                self.ping_sent = false;
                None
            }
            Seen::Disconnect { reason } => Some(self.fail(
                ErrorKind::ConnectionClosed,
                format!("the broker sent {reason}"),
            )),
            Seen::SubAck { .. } | Seen::Publish { .. } | Seen::Other => None,
        }
    }

    /// Says goodbye and waits for the broker to close (the caller bounds this). Counts into
    /// `messages` the chatload messages handed over on the way that were acknowledged: those
    /// after DISCONNECT are not, and the broker keeps them for the next connection.
    pub async fn close_counting(&mut self, messages: &mut u64) {
        let count = |e: &Incoming, messages: &mut u64| {
            if matches!(e, Incoming::Message(_)) {
                *messages += 1;
            }
        };
        while let Some(e) = self.events.pop_front() {
            count(&e, messages);
        }
        // What has already arrived is taken and acknowledged before the goodbye.
        while let Some(e) = futures_util::FutureExt::now_or_never(self.step()) {
            if matches!(e, Incoming::Lost { .. }) {
                return;
            }
            count(&e, messages);
        }
        if self.failure.is_some() {
            return;
        }
        wire::put_disconnect(&mut self.out);
        self.goodbye = true;
        while !matches!(self.step().await, Incoming::Lost { .. }) {}
    }

    /// How long ago the newest bytes read reached this machine.
    pub fn waited(&self) -> Option<Duration> {
        super::waited_since(self.stream.arrived_ns())
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.stream.tcp().get_ref().local_addr()
    }

    pub fn user(&self) -> u32 {
        self.user
    }

    pub fn target(&self) -> &MqttTarget {
        &self.target
    }

    pub fn confirms_sends(&self) -> bool {
        self.qos == 1
    }
}

#[cfg(test)]
mod tests;

//! One user's XMPP stream after the log-in: what chatload says becomes stanzas, what the
//! server sends becomes events. Writes are queued and read and written side by side, so a
//! slow reader never blocks a send; every buffer has a bound. Owns the stanza shapes and
//! the XEP-0198 ack bookkeeping; not the log-in (`login`).

use super::login::{LoggedIn, condition};
use super::xml::{self, Element, Frame, esc};
use super::{Conn, Resumption, XmppSetup, ns, trailing_number};
use crate::metrics::ErrorKind;
use crate::protocol::Recipient;
use crate::transport::connector::classify_io;
use crate::transport::{Delivery, Incoming, Outgoing, Session};
use bytes::{Buf, BytesMut};
use rustc_hash::FxHashSet;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};

/// Stanzas sent and not yet acked (XEP-0198) beyond which acks are no longer tracked.
const MAX_UNACKED: usize = 65_536;

pub struct XmppSession {
    setup: Arc<XmppSetup>,
    user: u32,
    /// The id a later stream may resume this one by (XEP-0198).
    resume_id: Option<String>,
    /// Closed with a goodbye: nothing to resume.
    closed: bool,
    /// Messages the server had from the stream this one resumed: the virtual user sends its
    /// unconfirmed messages again after a reconnect, and these are confirmed instead.
    already_taken: FxHashSet<u64>,
    /// This user's nick in rooms (its local part).
    nick: String,
    reader: ReadHalf<Conn>,
    /// The arrival stamp of the newest bytes read (see `StampedTcp::share_stamps`).
    arrival: Option<Arc<std::sync::atomic::AtomicU64>>,
    rbuf: BytesMut,
    outbox: Outbox,
    early: VecDeque<Element>,
    events: VecDeque<Incoming>,
    acks: Option<Acks>,
    /// The server stopped reading: a stanza did not fit under `MAX_UNWRITTEN`, and the
    /// session is given up at the next `next`.
    not_reading: bool,
}

/// What is queued for the server and how far it got.
struct Outbox {
    writer: WriteHalf<Conn>,
    out: Vec<u8>,
    written: usize,
    unflushed: bool,
}

impl Outbox {
    /// Writes some of what is queued. Cancel-safe: a write either happened or did not.
    async fn progress(&mut self) -> std::io::Result<()> {
        if self.written < self.out.len() {
            let n = self.writer.write(&self.out[self.written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written += n;
            self.unflushed = true;
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
            }
        } else if self.unflushed {
            self.writer.flush().await?;
            self.unflushed = false;
        }
        Ok(())
    }

    fn has_work(&self) -> bool {
        self.written < self.out.len() || self.unflushed
    }

    fn queued(&self) -> usize {
        self.out.len() - self.written
    }

    fn push(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
}

/// XEP-0198 on our side: which stanzas the server has not acked yet, and how many of its
/// stanzas we handled.
struct Acks {
    /// One entry per stanza sent since `<enable/>` not yet acked: chatload's id for a
    /// message, None for anything else.
    unacked: VecDeque<Option<u64>>,
    /// The server's last `h`.
    acked: u32,
    /// Stanzas sent when we last asked for an ack.
    asked_at: usize,
    sent: usize,
    /// Stanzas handled before the log-in handed the stream over.
    handled: u32,
}

fn cid(text: Option<&str>) -> Option<u64> {
    text?.strip_prefix('c')?.parse().ok()
}

fn num(e: &Element, name: &str) -> Option<u64> {
    e.attr(name)?.parse().ok()
}

impl XmppSession {
    pub(super) fn new(setup: Arc<XmppSetup>, user: u32, done: LoggedIn) -> Self {
        let mut conn = done.wire.conn;
        let arrival = conn.share_stamps();
        let (reader, writer) = tokio::io::split(conn);
        let mut already_taken = FxHashSet::default();
        let acks = match done.resumed {
            Some((mut earlier, h)) => {
                let newly = (h.wrapping_sub(earlier.acked) as usize).min(earlier.unacked.len());
                already_taken.extend(earlier.unacked.drain(..newly).flatten());
                Some(Acks {
                    unacked: VecDeque::new(),
                    acked: h,
                    asked_at: 0,
                    sent: 0,
                    handled: earlier.handled,
                })
            }
            None => done.acks.then(|| Acks {
                unacked: (0..done.sent_since_enable).map(|_| None).collect(),
                acked: 0,
                asked_at: 0,
                sent: done.sent_since_enable as usize,
                handled: done.wire.stanzas_in,
            }),
        };
        let nick = setup.account(user).0;
        XmppSession {
            setup,
            user,
            resume_id: done.resume_id,
            closed: false,
            already_taken,
            nick,
            reader,
            arrival,
            rbuf: done.wire.buf,
            outbox: Outbox {
                writer,
                out: Vec::new(),
                written: 0,
                unflushed: false,
            },
            early: done.early,
            events: VecDeque::new(),
            acks,
            not_reading: false,
        }
    }

    /// Queues one stanza (`id`: chatload's message id when it is a message).
    fn queue(&mut self, stanza: &str, id: Option<u64>) -> bool {
        if self.outbox.queued() + stanza.len() > super::super::MAX_UNWRITTEN {
            // Not queued: the session ends at the next `next`, and a message the server
            // had not confirmed is sent again on the next connection.
            self.not_reading = true;
            return true;
        }
        self.outbox.push(stanza.as_bytes());
        if let Some(a) = &mut self.acks {
            a.sent += 1;
            if a.unacked.len() < MAX_UNACKED {
                a.unacked.push_back(id);
            }
        }
        true
    }

    /// Asks for an ack of what was sent since the last request (one per batch of writes).
    fn ask_for_ack(&mut self) {
        if let Some(a) = &mut self.acks
            && a.sent > a.asked_at
        {
            a.asked_at = a.sent;
            self.outbox.push(b"<r xmlns='urn:xmpp:sm:3'/>");
        }
    }

    fn handled(&mut self, e: &Element) {
        if let Some(a) = &mut self.acks
            && matches!(e.name.as_str(), "message" | "presence" | "iq")
        {
            a.handled = a.handled.wrapping_add(1);
        }
    }

    /// What one stanza means; further events go to `events`.
    fn interpret(&mut self, e: Element) -> Incoming {
        match (e.name.as_str(), e.ns.as_str()) {
            ("message", _) => self.message(&e),
            ("presence", _) => self.presence(&e),
            ("iq", _) => {
                if matches!(e.attr("type"), Some("get" | "set")) {
                    let ping = e.child("ping", Some(ns::PING)).is_some();
                    let mut answer = String::new();
                    let id = esc(e.attr("id").unwrap_or("")).into_owned();
                    let to = e.attr("from").map(|f| format!(" to='{}'", esc(f)));
                    let to = to.as_deref().unwrap_or("");
                    if ping {
                        let _ = write!(answer, "<iq type='result' id='{id}'{to}/>");
                    } else {
                        let _ = write!(
                            answer,
                            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                        );
                    }
                    self.queue(&answer, None);
                }
                Incoming::Nothing
            }
            ("r", ns::SM) => {
                if let Some(a) = &self.acks {
                    let answer = format!("<a xmlns='urn:xmpp:sm:3' h='{}'/>", a.handled);
                    self.outbox.push(answer.as_bytes());
                }
                Incoming::Nothing
            }
            ("a", ns::SM) => self.acked(&e),
            ("error", "") => Incoming::Lost {
                kind: ErrorKind::ServerError,
                detail: format!("the server ended the stream: {}", condition(&e)),
            },
            _ => Incoming::Nothing,
        }
    }

    fn acked(&mut self, e: &Element) -> Incoming {
        let Some(a) = &mut self.acks else {
            return Incoming::Nothing;
        };
        let Some(h) = e.attr("h").and_then(|h| h.parse::<u32>().ok()) else {
            return Incoming::Undecodable("an XEP-0198 ack without a count".into());
        };
        let newly = h.wrapping_sub(a.acked) as usize;
        if newly > a.unacked.len() {
            return Incoming::ServerError(format!(
                "the server acked {newly} stanzas when {} were outstanding",
                a.unacked.len()
            ));
        }
        a.acked = h;
        for id in a.unacked.drain(..newly).flatten() {
            self.events.push_back(Incoming::Accepted { id });
        }
        self.events.pop_front().unwrap_or(Incoming::Nothing)
    }

    fn message(&mut self, e: &Element) -> Incoming {
        let from = e.attr("from").unwrap_or("");
        let x = e.child_in(ns::CHATLOAD);
        if e.attr("type") == Some("error") {
            let why = e.child("error", None).map_or("no reason".into(), condition);
            return match cid(e.attr("id")) {
                Some(id) => Incoming::Rejected {
                    id,
                    kind: ErrorKind::ServerError,
                    detail: format!("the server bounced the message: {why}"),
                },
                None => Incoming::ServerError(format!("the server bounced a stanza: {why}")),
            };
        }
        if let Some(r) = e.child("received", Some(ns::RECEIPTS)) {
            return match cid(r.attr("id")) {
                Some(id) => Incoming::Receipt {
                    id,
                    read: false,
                    t: x.and_then(|x| num(x, "t")),
                    r: None,
                },
                None => Incoming::Nothing,
            };
        }
        if let Some(m) = e.child("displayed", Some(ns::MARKERS)) {
            return match cid(m.attr("id")) {
                Some(id) => Incoming::Receipt {
                    id,
                    read: true,
                    t: None,
                    r: x.and_then(|x| num(x, "r")),
                },
                None => Incoming::Nothing,
            };
        }
        let (bare, resource) = from.split_once('/').unwrap_or((from, ""));
        let groupchat = e.attr("type") == Some("groupchat");
        if e.child("body", None).is_none() {
            if e.child("composing", Some(ns::CHATSTATES)).is_some() && !groupchat {
                return Incoming::Typing {
                    from: trailing_number(bare.split('@').next().unwrap_or("")),
                    r: x.and_then(|x| num(x, "r")),
                };
            }
            return Incoming::Nothing;
        }
        let Some(id) = x.and_then(|x| num(x, "id")).or_else(|| cid(e.attr("id"))) else {
            return Incoming::Nothing;
        };
        let (sender, group) = if groupchat {
            if resource == self.nick {
                // The room reflects our own message back to us.
                return Incoming::Nothing;
            }
            (
                trailing_number(resource),
                trailing_number(bare.split('@').next().unwrap_or("")),
            )
        } else {
            (trailing_number(bare.split('@').next().unwrap_or("")), None)
        };
        let Some(sender) = sender else {
            return Incoming::Undecodable(format!(
                "a message from `{}` whose sender is no chatload user",
                crate::secrets::excerpt(from, 80)
            ));
        };
        Incoming::Message(Delivery {
            id,
            from: sender,
            group,
            t: x.and_then(|x| num(x, "t")),
            s: x.and_then(|x| num(x, "s")),
            seq: None,
            wamid: 0,
        })
    }

    fn presence(&mut self, e: &Element) -> Incoming {
        match e.child_in(ns::CHATLOAD) {
            Some(x) if e.attr("type") != Some("error") => Incoming::Presence { r: num(x, "r") },
            _ => Incoming::Nothing,
        }
    }

    fn signal(&mut self, to: u32, payload: &str) -> bool {
        let stanza = format!(
            "<message to='{}' type='chat'>{payload}<no-store xmlns='urn:xmpp:hints'/></message>",
            esc(&self.setup.jid(to))
        );
        self.queue(&stanza, None)
    }
}

impl Session for XmppSession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        match out {
            Outgoing::Message {
                id, to, t, s, body, ..
            } => {
                if self.already_taken.remove(&id) {
                    self.events.push_back(Incoming::Accepted { id });
                    return true;
                }
                let (to, kind) = match to {
                    Recipient::User(u) => (self.setup.jid(u), "chat"),
                    Recipient::Group(g) => (self.setup.room_jid(g), "groupchat"),
                    Recipient::Business(_) => return false,
                };
                let receipts = if self.setup.target.receipts && kind == "chat" {
                    "<request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/>"
                } else {
                    ""
                };
                let stanza = format!(
                    "<message to='{}' type='{kind}' id='c{id}'><body>{}</body><x xmlns='{}' id='{id}' t='{t}' s='{s}'/>{receipts}</message>",
                    esc(&to),
                    esc(body),
                    ns::CHATLOAD
                );
                self.queue(&stanza, Some(id))
            }
            Outgoing::Delivered(d) if self.setup.target.receipts && d.group.is_none() => {
                let payload = format!(
                    "<received xmlns='{}' id='c{}'/><x xmlns='{}' t='{}' s='{}'/>",
                    ns::RECEIPTS,
                    d.id,
                    ns::CHATLOAD,
                    d.t.unwrap_or(0),
                    d.s.unwrap_or(0)
                );
                self.signal(d.from, &payload)
            }
            Outgoing::Read { id, from, r, .. } => {
                let payload = format!(
                    "<displayed xmlns='{}' id='c{id}'/><x xmlns='{}' r='{r}'/>",
                    ns::MARKERS,
                    ns::CHATLOAD
                );
                self.signal(from, &payload)
            }
            Outgoing::Typing { to, r, .. } => {
                let payload = format!(
                    "<composing xmlns='{}'/><x xmlns='{}' r='{r}'/>",
                    ns::CHATSTATES,
                    ns::CHATLOAD
                );
                self.signal(to, &payload)
            }
            Outgoing::Presence {
                state, s, contacts, ..
            } => {
                let (kind, show) = match state {
                    "offline" => (" type='unavailable'", ""),
                    "away" => ("", "<show>away</show>"),
                    _ => ("", ""),
                };
                let mut all = true;
                for c in contacts {
                    let stanza = format!(
                        "<presence to='{}'{kind}>{show}<x xmlns='{}' r='{s}' st='{}'/></presence>",
                        esc(&self.setup.jid(*c)),
                        ns::CHATLOAD,
                        esc(state)
                    );
                    all &= self.queue(&stanza, None);
                }
                all
            }
            Outgoing::Heartbeat => {
                // A whitespace keep-alive (RFC 6120 §4.6.1): not a stanza, never acked.
                self.outbox.push(b" ");
                true
            }
            Outgoing::Delivered(_) | Outgoing::History { .. } => false,
        }
    }

    async fn next(&mut self) -> Incoming {
        if let Some(e) = self.events.pop_front() {
            return e;
        }
        if self.not_reading {
            return super::super::not_reading(self.outbox.queued());
        }
        if let Some(e) = self.early.pop_front() {
            return self.interpret(e);
        }
        match xml::cut(&self.rbuf) {
            Ok(Some((frame, used))) => {
                self.rbuf.advance(used);
                return match frame {
                    Frame::Stanza(e) => {
                        // Stanzas kept from the log-in were counted there.
                        self.handled(&e);
                        self.interpret(e)
                    }
                    Frame::End => Incoming::Lost {
                        kind: ErrorKind::ConnectionClosed,
                        detail: "the server closed the XMPP stream".into(),
                    },
                    Frame::Header(_) => Incoming::Undecodable("a second stream header".into()),
                };
            }
            Ok(None) => {}
            Err(e) => {
                return Incoming::Lost {
                    kind: ErrorKind::Protocol,
                    detail: e.to_string(),
                };
            }
        }
        self.ask_for_ack();
        let has_work = self.outbox.has_work();
        if self.rbuf.capacity() - self.rbuf.len() < 1024 {
            self.rbuf.reserve(4096);
        }
        tokio::select! {
            biased;
            r = self.reader.read_buf(&mut self.rbuf) => match r {
                Ok(0) => Incoming::Lost {
                    kind: ErrorKind::ConnectionClosed,
                    detail: "the server closed the connection".into(),
                },
                Ok(_) => Incoming::Nothing,
                Err(e) => Incoming::Lost { kind: classify_io(&e), detail: e.to_string() },
            },
            w = self.outbox.progress(), if has_work => match w {
                Ok(()) => Incoming::Nothing,
                Err(e) => Incoming::Lost { kind: classify_io(&e), detail: e.to_string() },
            },
        }
    }

    async fn close(&mut self) {
        self.closed = true;
        self.ask_for_ack();
        // Ack everything handled: a server keeps unacked stanzas of a closed stream and
        // hands them over again (offline storage), which would count as duplicates.
        if let Some(a) = &self.acks {
            let answer = format!("<a xmlns='urn:xmpp:sm:3' h='{}'/>", a.handled);
            self.outbox.push(answer.as_bytes());
        }
        self.outbox
            .push(b"<presence type='unavailable'/></stream:stream>");
        while self.outbox.has_work() {
            if self.outbox.progress().await.is_err() {
                return;
            }
        }
        self.await_servers_end().await;
        let _ = self.outbox.writer.shutdown().await;
    }

    fn confirms_sends(&self) -> bool {
        self.acks.is_some()
    }

    fn waited(&self) -> Option<std::time::Duration> {
        let arrived_ns = self
            .arrival
            .as_ref()?
            .load(std::sync::atomic::Ordering::Relaxed);
        crate::transport::stamped_tcp::waited_since(arrived_ns)
    }
}

impl XmppSession {
    /// RFC 6120 §4.4 and RFC 7395 §3.6: the client waits for the server's own end of the
    /// stream before closing the connection. Closing first makes the end look like a
    /// network failure, and a server with stream management (ejabberd) then keeps the
    /// session waiting for a resumption that never comes: the next run's log-in of the
    /// same resource replaces it and leaves the rooms it was in. What arrives meanwhile was
    /// not acked, so the server stores it for the user's next session.
    async fn await_servers_end(&mut self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match xml::cut(&self.rbuf) {
                Ok(Some((Frame::End, _))) | Err(_) => return,
                Ok(Some((_, used))) => {
                    self.rbuf.advance(used);
                    continue;
                }
                Ok(None) => {}
            }
            if self.rbuf.capacity() - self.rbuf.len() < 1024 {
                self.rbuf.reserve(4096);
            }
            match tokio::time::timeout_at(deadline, self.reader.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}

impl Drop for XmppSession {
    /// A stream cut without a goodbye (a network failure, a reconnect storm) leaves what the
    /// next connection needs to resume it.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let (Some(id), Some(a)) = (self.resume_id.take(), self.acks.as_mut()) {
            self.setup.keep_resumption(
                self.user,
                Resumption {
                    id,
                    handled: a.handled,
                    acked: a.acked,
                    unacked: std::mem::take(&mut a.unacked),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatload_ids_ride_in_stanza_ids() {
        assert_eq!(cid(Some("c123")), Some(123));
        assert_eq!(cid(Some("123")), None);
        assert_eq!(cid(None), None);
    }
}

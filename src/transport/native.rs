//! chatload's own WebSocket protocol (the reference server's, see `protocol`): connect, say
//! hello, then turn [`Outgoing`] into frames and frames into [`Incoming`]. Owns connection
//! set-up and classifying what went wrong; the virtual user owns the rest.

use super::{ConnectError, Delivery, Incoming, Outgoing, Session, tls::TlsContext};
use crate::metrics::ErrorKind;
use crate::protocol::{self, Frame};
use crate::wsio::{Duplex, Event};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A connected, greeted session.
pub struct NativeSession {
    /// Boxed: the stream is 1.4 KB (its TLS state is inline), and a session is part of every
    /// user's future whatever its protocol.
    pub ws: Duplex<Box<Socket>>,
    /// Frames that arrived with the greeting (resumed deliveries), in order.
    early: std::collections::VecDeque<Message>,
}

pub fn classify(e: &WsError) -> ErrorKind {
    match e {
        WsError::Io(io) => super::connector::classify_io(io),
        WsError::Tls(_) => ErrorKind::Tls,
        WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::ConnectionClosed,
        // The peer went away without a close frame: a reset, as far as a client can tell.
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => ErrorKind::ConnectionReset,
        WsError::Protocol(_) | WsError::Utf8(_) | WsError::Capacity(_) => ErrorKind::Protocol,
        WsError::Http(r) => ErrorKind::for_status(r.status().as_u16()),
        _ => ErrorKind::ConnectFailed,
    }
}

/// One sentence for a WebSocket error: tungstenite's own words, but for a frame longer than
/// chatload reads, which says so in the user's terms.
pub fn describe(e: &WsError) -> String {
    use tokio_tungstenite::tungstenite::error::CapacityError;
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => format!(
            "the target sent a frame of {size} bytes; chatload reads frames of at most {max_size} bytes, so it gave the connection up"
        ),
        _ => crate::secrets::printable(&e.to_string()),
    }
}

/// What `who` (the target, the gateway) said as it closed: its code and reason, when it
/// gave them.
pub fn closed(who: &str, frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => format!(
            "{who} closed the connection ({}: {})",
            u16::from(f.code),
            crate::secrets::excerpt(&f.reason, 123)
        ),
        Some(f) => format!("{who} closed the connection ({})", u16::from(f.code)),
        None => format!("{who} closed the connection"),
    }
}

pub use super::ws_open::{Socket, open};

/// Connects to `url` as `user` of run `run`, resuming after `last_seq`, within `timeout`
/// overall.
pub async fn connect(
    url: &str,
    tls: &TlsContext,
    (user, last_seq, run): (u32, u64, u64),
    timeout: Duration,
    source: Option<std::net::IpAddr>,
) -> Result<NativeSession, ConnectError> {
    let started = tokio::time::Instant::now();
    // Two waits, so an error can say whether anything answered at all.
    let progress = super::ws_open::Progress::default();
    let ws = match tokio::time::timeout(timeout, open(url, tls, source, &progress)).await {
        Ok(r) => r?,
        Err(_) => return Err(progress.timed_out(timeout)),
    };
    let attempt = async {
        let mut ws = Duplex::new(Box::new(ws));
        ws.push(Message::text(protocol::hello(user, last_seq, run)));
        ws.write_all()
            .await
            .map_err(|e| ConnectError::new(classify(&e), describe(&e)))?;
        let mut early = std::collections::VecDeque::new();
        loop {
            match ws.recv().await {
                Some(Ok(Message::Text(t))) => {
                    let op = protocol::decode(&t).map(|f| f.op.into_owned());
                    match op.as_deref() {
                        Ok("hello_ok") => break,
                        Ok("error") => {
                            return Err(ConnectError::new(
                                ErrorKind::ServerError,
                                format!("the server refused hello: {}", excerpt(&t)),
                            ));
                        }
                        Ok(_) => early.push_back(Message::Text(t)),
                        Err(_) => {
                            return Err(ConnectError::new(
                                ErrorKind::Protocol,
                                format!(
                                    "it answered hello with a frame that is not chatload's protocol: `{}`",
                                    excerpt(&t)
                                ),
                            ));
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ConnectError::new(classify(&e), describe(&e))),
                None => {
                    return Err(ConnectError::new(
                        ErrorKind::ConnectionClosed,
                        "closed before hello_ok",
                    ));
                }
            }
        }
        Ok(NativeSession { ws, early })
    };
    match tokio::time::timeout_at(started + timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::new(
            ErrorKind::HelloTimeout,
            format!("the WebSocket opened, but no hello_ok came within {timeout:?}"),
        )),
    }
}

fn excerpt(text: &str) -> String {
    crate::secrets::excerpt(text, 160)
}

/// What a chatload frame means to the user who received it (shared with MQTT, whose
/// payloads are chatload frames).
pub fn interpret(text: &str) -> Incoming {
    let Ok(frame) = protocol::decode(text) else {
        return Incoming::Undecodable(format!("undecodable frame: {}", excerpt(text)));
    };
    interpret_frame(&frame, text)
}

fn interpret_frame(frame: &Frame<'_>, text: &str) -> Incoming {
    match frame.op.as_ref() {
        "msg" => match (frame.id, frame.from) {
            (Some(id), Some(from)) => Incoming::Message(Delivery {
                id,
                from,
                group: frame.group,
                t: frame.t,
                s: frame.s,
                seq: frame.seq,
                wamid: frame.w.unwrap_or(0),
            }),
            _ => Incoming::Undecodable(format!("msg frame without id or from: {}", excerpt(text))),
        },
        "sent" => frame
            .id
            .map_or(Incoming::Nothing, |id| Incoming::Accepted { id }),
        "receipt" => match frame.id {
            Some(id) => Incoming::Receipt {
                id,
                read: frame.state.as_deref() == Some("read"),
                t: frame.t,
                r: frame.r,
            },
            None => Incoming::Nothing,
        },
        "typing" => Incoming::Typing {
            from: frame.from,
            r: frame.r,
        },
        "presence" => Incoming::Presence { r: frame.r },
        "goaway" => Incoming::GoAway {
            after_ms: frame.after_ms.unwrap_or(0),
        },
        "history_ok" => Incoming::History {
            group: frame.group,
            r: frame.r,
        },
        "error" => Incoming::ServerError(format!("the target answered: {}", excerpt(text))),
        _ => Incoming::Nothing,
    }
}

/// The chatload frame for an outgoing event (shared with MQTT).
pub fn encode(out: &Outgoing<'_>) -> String {
    match *out {
        Outgoing::Message {
            id,
            to,
            t,
            s,
            body,
            media,
            ..
        } => protocol::send_media(id, to, t, s, body, media),
        Outgoing::Delivered(d) => protocol::ack(
            d.seq.unwrap_or(0),
            d.id,
            d.from,
            d.t.unwrap_or(0),
            d.s.unwrap_or(0),
            d.wamid,
        ),
        Outgoing::Read {
            id,
            from,
            wamid,
            r,
            s,
        } => protocol::read(id, from, wamid, r, s),
        Outgoing::Typing { to, r, .. } => protocol::typing(to, r),
        Outgoing::Presence {
            state, s, contacts, ..
        } => protocol::presence(state, s, contacts),
        Outgoing::Heartbeat => protocol::PING.to_string(),
        Outgoing::History { group, r } => protocol::history(group, r),
    }
}

impl Session for NativeSession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        self.ws.push(Message::text(encode(&out)));
        true
    }

    async fn next(&mut self) -> Incoming {
        if let Some(Message::Text(t)) = self.early.pop_front() {
            return interpret(&t);
        }
        if self.ws.queued_bytes() > super::MAX_UNWRITTEN {
            return super::not_reading(self.ws.queued_bytes());
        }
        match self.ws.event().await {
            Event::Read(f) => match f {
                Some(Ok(Message::Text(t))) => interpret(&t),
                Some(Ok(Message::Close(c))) => Incoming::Lost {
                    kind: ErrorKind::ConnectionClosed,
                    detail: closed("the target", c.as_ref()),
                },
                None => Incoming::Lost {
                    kind: ErrorKind::ConnectionClosed,
                    detail: closed("the target", None),
                },
                Some(Ok(_)) => Incoming::Nothing,
                Some(Err(e)) => Incoming::Lost {
                    kind: classify(&e),
                    detail: describe(&e),
                },
            },
            Event::Wrote(Ok(())) => Incoming::Nothing,
            Event::Wrote(Err(e)) => Incoming::Lost {
                kind: classify(&e),
                detail: describe(&e),
            },
        }
    }

    async fn close(&mut self) {
        let _ = self.ws.close().await;
    }

    fn confirms_sends(&self) -> bool {
        true
    }

    fn waited(&self) -> Option<Duration> {
        super::ws_open::waited(self.ws.get_ref())
    }
}

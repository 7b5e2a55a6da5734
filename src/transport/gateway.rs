//! Any WebSocket chat gateway: the scenario's `[target.gateway]` describes how to log in,
//! how a send looks (templates) and how to recognise a delivered message, a confirmation, a
//! receipt and an error in what the gateway sends (JSON pointers). Owns speaking a
//! described protocol; the description itself is compiled in `scenario::target`.

use super::native::{Socket, classify};
use super::{ConnectError, Delivery, Incoming, Outgoing, Session, tls::TlsContext};
use crate::metrics::ErrorKind;
use crate::protocol::Recipient;
use crate::scenario::target::{GatewayTarget, Receive};
use crate::scenario::template::{Slot, Template, Value, body_for, message_id, number};
use crate::secrets::Credentials;
use crate::wsio::QueuedWriter;
use futures_util::{StreamExt, stream::SplitStream};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Everything needed to open one user's gateway session.
pub struct GatewaySetup {
    pub url: String,
    pub target: Arc<GatewayTarget>,
    pub tls: TlsContext,
    pub credentials: Arc<Credentials>,
    /// Local addresses connections come from.
    pub sources: super::source::SourcePool,
}

pub struct GatewaySession {
    user: u32,
    target: Arc<GatewayTarget>,
    credentials: Arc<Credentials>,
    reader: SplitStream<Socket>,
    writer: QueuedWriter<Socket>,
    early: VecDeque<serde_json::Value>,
    body: String,
}

fn excerpt(text: &str) -> String {
    crate::secrets::excerpt(text, 160)
}

/// The values of one frame's slots.
struct Fill<'a> {
    user: u32,
    credentials: &'a Credentials,
    to: u64,
    group: u64,
    id: u64,
    from: u64,
    seq: u64,
    intended_us: u64,
    now_us: u64,
    body: &'a str,
}

impl Fill<'_> {
    fn value(&self, s: Slot) -> Value<'_> {
        match s {
            Slot::User => Value::Number(self.user as u64),
            Slot::To => Value::Number(self.to),
            Slot::Group => Value::Number(self.group),
            Slot::Id => Value::Number(self.id),
            Slot::Body => Value::Text(self.body),
            Slot::From => Value::Number(self.from),
            Slot::Seq => Value::Number(self.seq),
            Slot::NowMs => Value::Number(self.now_us / 1000),
            Slot::NowUs => Value::Number(self.now_us),
            Slot::IntendedUs => Value::Number(self.intended_us),
            Slot::Token => Value::secret(self.credentials.token_of(self.user)),
            Slot::Username => Value::secret(self.credentials.username_of(self.user)),
            Slot::Password => Value::secret(self.credentials.password_of(self.user)),
        }
    }
}

fn frame(binary: bool, text: String) -> Message {
    if binary {
        Message::binary(text.into_bytes())
    } else {
        Message::text(text)
    }
}

fn parse(msg: Message) -> Option<Result<serde_json::Value, String>> {
    let bytes: &[u8] = match &msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return None,
    };
    Some(serde_json::from_slice(bytes).map_err(|_| {
        format!(
            "a frame that is not JSON: {}",
            excerpt(&String::from_utf8_lossy(bytes))
        )
    }))
}

/// A delivery from a frame that matched `message`.
fn delivery(r: &Receive, v: &serde_json::Value) -> Option<Delivery> {
    let id = v.pointer(&r.id).and_then(message_id)?;
    let from = match &r.from {
        Some(p) => v.pointer(p).and_then(number)?,
        None => u32::MAX,
    };
    let group = r.group.as_ref().and_then(|p| v.pointer(p)).and_then(number);
    Some(Delivery {
        id,
        from,
        group,
        t: None,
        s: None,
        seq: None,
        wamid: 0,
    })
}

/// What a parsed gateway frame means.
pub fn interpret(g: &GatewayTarget, v: &serde_json::Value) -> Incoming {
    if g.message.matches.matches(v) {
        return match delivery(&g.message, v) {
            Some(d) => Incoming::Message(d),
            None => Incoming::Undecodable(format!(
                "a message frame without a readable id at {} or sender: {}",
                g.message.id,
                excerpt(&v.to_string())
            )),
        };
    }
    if let Some(a) = &g.accepted
        && a.matches.matches(v)
    {
        return v
            .pointer(&a.id)
            .and_then(message_id)
            .map_or(Incoming::Nothing, |id| Incoming::Accepted { id });
    }
    if let Some(r) = &g.receipt
        && r.matches.matches(v)
    {
        return v
            .pointer(&r.id)
            .and_then(message_id)
            .map_or(Incoming::Nothing, |id| Incoming::Receipt {
                id,
                read: r.read.as_ref().is_some_and(|m| m.matches(v)),
                t: None,
                r: None,
            });
    }
    if let Some(e) = &g.error
        && e.matches(v)
    {
        return Incoming::ServerError(format!("the gateway answered: {}", excerpt(&v.to_string())));
    }
    Incoming::Nothing
}

impl GatewaySetup {
    /// Connects, logs in, waits for `ready` and joins the user's groups.
    pub async fn connect(
        &self,
        user: u32,
        groups: &[u32],
        timeout: Duration,
    ) -> Result<GatewaySession, ConnectError> {
        let g = &self.target;
        let started = tokio::time::Instant::now();
        let fill = |to: u64, group: u64| Fill {
            user,
            credentials: &self.credentials,
            to,
            group,
            id: 0,
            from: user as u64,
            seq: 0,
            intended_us: 0,
            now_us: 0,
            body: "",
        };
        let extras = {
            let f = fill(0, 0);
            super::ws_open::Extras {
                headers: g
                    .headers
                    .iter()
                    .map(|(k, t)| (k.clone(), t.render(false, |s| f.value(s))))
                    .collect(),
                subprotocols: g.subprotocols.clone(),
            }
        };
        // Two waits, so an error can say whether anything answered at all.
        let opened = tokio::time::timeout(
            timeout,
            super::ws_open::open_with(&self.url, &self.tls, self.sources.for_user(user), &extras),
        )
        .await;
        let ws = match opened {
            Ok(r) => r?,
            Err(_) => {
                return Err(ConnectError::new(
                    ErrorKind::ConnectTimeout,
                    format!("no WebSocket connection within {timeout:?}"),
                ));
            }
        };
        let attempt = async {
            let (sink, mut reader) = ws.split();
            let mut writer = QueuedWriter::new(sink);
            if let Some(hello) = &g.hello {
                let f = fill(0, 0);
                writer.push(frame(g.binary, hello.render(true, |s| f.value(s))));
            }
            let write_all = async |w: &mut QueuedWriter<Socket>| {
                while w.has_work() {
                    w.progress()
                        .await
                        .map_err(|e| ConnectError::new(classify(&e), e.to_string()))?;
                }
                Ok::<(), ConnectError>(())
            };
            write_all(&mut writer).await?;
            let mut early = VecDeque::new();
            if let Some(ready) = &g.ready {
                loop {
                    match reader.next().await {
                        Some(Ok(m)) => match parse(m) {
                            Some(Ok(v)) if ready.matches(&v) => break,
                            Some(Ok(v)) => {
                                if let Some(e) = &g.error
                                    && e.matches(&v)
                                {
                                    return Err(ConnectError::new(
                                        ErrorKind::ServerError,
                                        format!(
                                            "the gateway refused the log-in: {}",
                                            excerpt(&v.to_string())
                                        ),
                                    ));
                                }
                                early.push_back(v);
                            }
                            Some(Err(detail)) => {
                                return Err(ConnectError::new(ErrorKind::Protocol, detail));
                            }
                            None => {}
                        },
                        Some(Err(e)) => return Err(ConnectError::new(classify(&e), e.to_string())),
                        None => {
                            return Err(ConnectError::new(
                                ErrorKind::ConnectionClosed,
                                "the gateway closed before it was ready",
                            ));
                        }
                    }
                }
            }
            if let Some(join) = &g.join {
                for group in groups {
                    let f = fill(0, *group as u64);
                    writer.push(frame(g.binary, join.render(true, |s| f.value(s))));
                }
                write_all(&mut writer).await?;
            }
            Ok(GatewaySession {
                user,
                target: g.clone(),
                credentials: self.credentials.clone(),
                reader,
                writer,
                early,
                body: String::new(),
            })
        };
        match tokio::time::timeout_at(started + timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::new(
                ErrorKind::HelloTimeout,
                format!("the WebSocket opened, but the gateway was not ready within {timeout:?}"),
            )),
        }
    }
}

impl GatewaySession {
    fn write(&mut self, template: Option<&Template>, fill: &Fill<'_>) -> bool {
        let Some(t) = template else { return false };
        let text = t.render(true, |s| fill.value(s));
        self.writer.push(frame(self.target.binary, text));
        true
    }
}

impl Session for GatewaySession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        let g = self.target.clone();
        let credentials = self.credentials.clone();
        let base = Fill {
            user: self.user,
            credentials: &credentials,
            to: 0,
            group: 0,
            id: 0,
            from: self.user as u64,
            seq: 0,
            intended_us: 0,
            now_us: 0,
            body: "",
        };
        match out {
            Outgoing::Message {
                id, to, t, s, body, ..
            } => {
                let mut text = std::mem::take(&mut self.body);
                text.clear();
                body_for(&mut text, id, body.len());
                let (template, to, group) = match to {
                    Recipient::User(u) => (Some(&g.send), u as u64, 0),
                    Recipient::Group(gr) => (g.send_group.as_ref(), 0, gr as u64),
                    Recipient::Business(_) => (None, 0, 0),
                };
                let ok = self.write(
                    template,
                    &Fill {
                        to,
                        group,
                        id,
                        intended_us: t,
                        now_us: s,
                        body: &text,
                        ..base
                    },
                );
                self.body = text;
                ok
            }
            Outgoing::Delivered(d) => self.write(
                g.delivered.as_ref(),
                &Fill {
                    id: d.id,
                    from: d.from as u64,
                    seq: d.seq.unwrap_or(0),
                    group: d.group.unwrap_or(0) as u64,
                    ..base
                },
            ),
            Outgoing::Read { id, from, r, s, .. } => self.write(
                g.read.as_ref(),
                &Fill {
                    id,
                    from: from as u64,
                    intended_us: r,
                    now_us: s,
                    ..base
                },
            ),
            Outgoing::Typing { to, r, .. } => self.write(
                g.typing.as_ref(),
                &Fill {
                    to: to as u64,
                    intended_us: r,
                    now_us: r,
                    ..base
                },
            ),
            Outgoing::Heartbeat => self.write(g.heartbeat.as_ref(), &base),
            Outgoing::Presence { .. } | Outgoing::History { .. } => false,
        }
    }

    async fn next(&mut self) -> Incoming {
        if let Some(v) = self.early.pop_front() {
            return interpret(&self.target, &v);
        }
        let has_work = self.writer.has_work();
        tokio::select! {
            biased;
            f = self.reader.next() => match f {
                Some(Ok(Message::Close(_))) | None => Incoming::Lost {
                    kind: ErrorKind::ConnectionClosed,
                    detail: "the gateway closed the connection".into(),
                },
                Some(Ok(m)) => match parse(m) {
                    Some(Ok(v)) => interpret(&self.target, &v),
                    Some(Err(detail)) => Incoming::Undecodable(detail),
                    None => Incoming::Nothing,
                },
                Some(Err(e)) => Incoming::Lost { kind: classify(&e), detail: e.to_string() },
            },
            w = self.writer.progress(), if has_work => match w {
                Ok(()) => Incoming::Nothing,
                Err(e) => Incoming::Lost { kind: classify(&e), detail: e.to_string() },
            },
        }
    }

    async fn close(&mut self) {
        let _ = self.writer.close().await;
    }

    fn confirms_sends(&self) -> bool {
        self.target.accepted.is_some()
    }
}

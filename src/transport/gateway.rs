//! Any WebSocket chat gateway: the scenario's `[target.gateway]` describes how to log in
//! (one hello, or send/expect steps whose captured values later frames use), how a send
//! looks (templates) and how to recognise a delivered message, a confirmation, a receipt
//! and an error in what the gateway sends (JSON pointers, or patterns over frames that are
//! not JSON, text or binary). Owns speaking a described protocol; the description itself is
//! compiled in `scenario::gateway`.

use super::native::{Socket, classify, closed, describe};
use super::{ConnectError, Delivery, Incoming, Outgoing, Session, tls::TlsContext};
use crate::metrics::ErrorKind;
use crate::protocol::Recipient;
use crate::scenario::target::{FrameFormat, GatewayTarget, Receive};
use crate::scenario::template::{
    Frame, Matcher, Slot, Template, Value, body_for, message_id, number,
};
use crate::secrets::Credentials;
use crate::wsio::{Duplex, Event};
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
    /// This run's token, `{{run}}`.
    pub run: Arc<str>,
}

pub struct GatewaySession {
    user: u32,
    target: Arc<GatewayTarget>,
    credentials: Arc<Credentials>,
    run: Arc<str>,
    ws: Duplex<Box<Socket>>,
    early: VecDeque<Received>,
    body: String,
    /// What the log-in steps captured, by index (`{{captured.name}}`).
    captured: Arc<[String]>,
}

/// A frame as the scenario's format reads it.
pub enum Received {
    Json(serde_json::Value),
    Raw(Vec<u8>),
}

impl Received {
    fn frame(&self) -> Frame<'_> {
        match self {
            Received::Json(v) => Frame::Json(v),
            Received::Raw(b) => Frame::Raw(b),
        }
    }

    fn shown(&self) -> String {
        match self {
            Received::Json(v) => excerpt(&v.to_string()),
            Received::Raw(b) => excerpt(&String::from_utf8_lossy(b)),
        }
    }
}

/// The longest frame read from a gateway. Its protocol is someone else's, whose frames (a
/// session's first state, a page of history) may be longer than chatload's own; 4 MiB, as
/// tungstenite's default frame limit, is what each gateway connection may make chatload hold.
const MAX_FRAME: usize = 4 << 20;

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
    captured: &'a [String],
    run: &'a str,
}

impl<'a> Fill<'a> {
    /// The values of a frame outside any message: the log-in's, a join's.
    fn session(
        user: u32,
        credentials: &'a Credentials,
        captured: &'a [String],
        run: &'a str,
    ) -> Self {
        Fill {
            user,
            credentials,
            to: 0,
            group: 0,
            id: 0,
            from: user as u64,
            seq: 0,
            intended_us: 0,
            now_us: 0,
            body: "",
            captured,
            run,
        }
    }

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
            Slot::UserId | Slot::ToId | Slot::GroupId | Slot::ChatId => Value::Empty,
            Slot::Run => Value::Text(self.run),
            Slot::Captured(i) => self
                .captured
                .get(i as usize)
                .map_or(Value::Empty, |c| Value::Text(c)),
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

fn parse(format: FrameFormat, msg: Message) -> Option<Result<Received, String>> {
    let bytes: &[u8] = match &msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return None,
    };
    Some(match format {
        FrameFormat::Text => Ok(Received::Raw(bytes.to_vec())),
        FrameFormat::Json => serde_json::from_slice(bytes).map(Received::Json).map_err(|_| {
            format!(
                "a frame that is not JSON: {} (for frames in another format, set [target.gateway] format = \"text\" and match them with patterns)",
                excerpt(&String::from_utf8_lossy(bytes))
            )
        }),
    })
}

/// A delivery from a frame that matched `message`.
fn delivery(r: &Receive, f: Frame<'_>) -> Option<Delivery> {
    let id = message_id(&r.matches.field(f, &r.id)?)?;
    let from = match &r.from {
        Some(p) => number(&r.matches.field(f, p)?)?,
        None => u32::MAX,
    };
    let group = r
        .group
        .as_ref()
        .and_then(|p| r.matches.field(f, p))
        .and_then(|v| number(&v));
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

fn id_in(r: &Receive, f: Frame<'_>) -> Option<u64> {
    message_id(&r.matches.field(f, &r.id)?)
}

/// What a received gateway frame means.
pub fn interpret(g: &GatewayTarget, received: &Received) -> Incoming {
    let f = received.frame();
    if g.message.matches.matches(f) {
        return match delivery(&g.message, f) {
            Some(d) => Incoming::Message(d),
            None => Incoming::Undecodable(format!(
                "a message frame without a readable id at {} or sender: {}",
                g.message.id,
                received.shown()
            )),
        };
    }
    if let Some(a) = &g.accepted
        && a.matches.matches(f)
    {
        return id_in(a, f).map_or(Incoming::Nothing, |id| Incoming::Accepted { id });
    }
    if let Some(r) = &g.receipt
        && r.matches.matches(f)
    {
        return id_in(r, f).map_or(Incoming::Nothing, |id| Incoming::Receipt {
            id,
            read: r.read.as_ref().is_some_and(|m| m.matches(f)),
            t: None,
            r: None,
        });
    }
    if let Some(e) = &g.error
        && e.matches(f)
    {
        return Incoming::ServerError(format!("the gateway answered: {}", received.shown()));
    }
    Incoming::Nothing
}

/// The value a log-in step keeps from the frame it expected, bounded in size.
fn capture(
    expect: &Matcher,
    f: Frame<'_>,
    field: &str,
    step: usize,
) -> Result<String, ConnectError> {
    let missing = || {
        ConnectError::new(
            ErrorKind::Protocol,
            format!("log-in step {step}: the expected frame has nothing at `{field}` to capture"),
        )
    };
    let text = match expect.field(f, field).ok_or_else(missing)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => return Err(missing()),
        other => other.to_string(),
    };
    if text.len() > crate::scenario::gateway::MAX_CAPTURED {
        return Err(ConnectError::new(
            ErrorKind::Protocol,
            format!(
                "log-in step {step}: the value at `{field}` is longer than {} bytes",
                crate::scenario::gateway::MAX_CAPTURED
            ),
        ));
    }
    Ok(text)
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
        let extras = {
            let f = Fill::session(user, &self.credentials, &[], &self.run);
            super::ws_open::Extras {
                headers: g
                    .headers
                    .iter()
                    .map(|(k, t)| (k.clone(), t.render(false, |s| f.value(s))))
                    .collect(),
                subprotocols: g.subprotocols.clone(),
                max_frame: Some(MAX_FRAME),
            }
        };
        // Two waits, so an error can say whether anything answered at all.
        let progress = super::ws_open::Progress::default();
        let opened = tokio::time::timeout(
            timeout,
            super::ws_open::open_with(
                &self.url,
                &self.tls,
                self.sources.for_user(user),
                &extras,
                &progress,
            ),
        )
        .await;
        let ws = match opened {
            Ok(r) => r?,
            Err(_) => return Err(progress.timed_out(timeout)),
        };
        let json = g.format == FrameFormat::Json;
        let mut step_at = 0usize;
        let attempt = async {
            let mut ws = Duplex::new(Box::new(ws));
            let mut captured = vec![String::new(); g.captured.len()];
            let mut early = VecDeque::new();
            let write_all = async |w: &mut Duplex<Box<Socket>>| {
                w.write_all()
                    .await
                    .map_err(|e| ConnectError::new(classify(&e), describe(&e)))
            };
            for (i, step) in g.login.iter().enumerate() {
                step_at = i + 1;
                if let Some(send) = &step.send {
                    let f = Fill::session(user, &self.credentials, &captured, &self.run);
                    ws.push(frame(g.binary, send.render(json, |s| f.value(s))));
                    write_all(&mut ws).await?;
                }
                let Some(expect) = &step.expect else {
                    continue;
                };
                let got = loop {
                    match ws.recv().await {
                        Some(Ok(m)) => match parse(g.format, m) {
                            Some(Ok(r)) if expect.matches(r.frame()) => break r,
                            Some(Ok(r)) => {
                                if let Some(e) = &g.error
                                    && e.matches(r.frame())
                                {
                                    return Err(ConnectError::new(
                                        ErrorKind::ServerError,
                                        format!(
                                            "the gateway refused the log-in (step {}): {}",
                                            i + 1,
                                            r.shown()
                                        ),
                                    ));
                                }
                                early.push_back(r);
                            }
                            Some(Err(detail)) => {
                                return Err(ConnectError::new(ErrorKind::Protocol, detail));
                            }
                            None => {}
                        },
                        Some(Err(e)) => return Err(ConnectError::new(classify(&e), describe(&e))),
                        None => {
                            return Err(ConnectError::new(
                                ErrorKind::ConnectionClosed,
                                format!(
                                    "the gateway closed the connection during log-in step {}",
                                    i + 1
                                ),
                            ));
                        }
                    }
                };
                for (index, field) in &step.capture {
                    captured[*index as usize] = capture(expect, got.frame(), field, i + 1)?;
                }
            }
            if let Some(join) = &g.join {
                for group in groups {
                    let f = Fill {
                        group: *group as u64,
                        ..Fill::session(user, &self.credentials, &captured, &self.run)
                    };
                    ws.push(frame(g.binary, join.render(json, |s| f.value(s))));
                }
                write_all(&mut ws).await?;
            }
            Ok(GatewaySession {
                user,
                target: g.clone(),
                credentials: self.credentials.clone(),
                run: self.run.clone(),
                ws,
                early,
                body: String::new(),
                captured: captured.into(),
            })
        };
        match tokio::time::timeout_at(started + timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::new(
                ErrorKind::HelloTimeout,
                if g.login.len() > 1 {
                    format!(
                        "the WebSocket opened, but log-in step {step_at} of {} did not complete within {timeout:?}",
                        g.login.len()
                    )
                } else {
                    format!(
                        "the WebSocket opened, but the gateway was not ready within {timeout:?}"
                    )
                },
            )),
        }
    }
}

impl GatewaySession {
    fn write(&mut self, template: Option<&Template>, fill: &Fill<'_>) -> bool {
        let Some(t) = template else { return false };
        let text = t.render(self.target.format == FrameFormat::Json, |s| fill.value(s));
        self.ws.push(frame(self.target.binary, text));
        true
    }
}

impl Session for GatewaySession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        let g = self.target.clone();
        let credentials = self.credentials.clone();
        let captured = self.captured.clone();
        let run = self.run.clone();
        let base = Fill::session(self.user, &credentials, &captured, &run);
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
        if self.ws.queued_bytes() > super::MAX_UNWRITTEN {
            return super::not_reading(self.ws.queued_bytes());
        }
        match self.ws.event().await {
            Event::Read(Some(Ok(Message::Close(c)))) => Incoming::Lost {
                kind: ErrorKind::ConnectionClosed,
                detail: closed("the gateway", c.as_ref()),
            },
            Event::Read(None) => Incoming::Lost {
                kind: ErrorKind::ConnectionClosed,
                detail: closed("the gateway", None),
            },
            Event::Read(Some(Ok(m))) => match parse(self.target.format, m) {
                Some(Ok(r)) => interpret(&self.target, &r),
                Some(Err(detail)) => Incoming::Undecodable(detail),
                None => Incoming::Nothing,
            },
            Event::Read(Some(Err(e))) | Event::Wrote(Err(e)) => Incoming::Lost {
                kind: classify(&e),
                detail: describe(&e),
            },
            Event::Wrote(Ok(())) => Incoming::Nothing,
        }
    }

    async fn close(&mut self) {
        let _ = self.ws.close().await;
    }

    fn confirms_sends(&self) -> bool {
        self.target.accepted.is_some()
    }

    fn waited(&self) -> Option<std::time::Duration> {
        super::ws_open::waited(self.ws.get_ref())
    }
}

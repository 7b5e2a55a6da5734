//! Any HTTP messaging API: each message is one templated request (method, URL, headers, JSON
//! body) whose 2xx answer confirms it; deliveries are seen either on a subscription the user
//! holds (chatload's WebSocket, a gateway, MQTT) or by a webhook receiver chatload runs
//! (`webhook`). Signals go as requests of their own when the scenario gives them
//! (`http_signal`), otherwise where deliveries come from. Owns the send side and the
//! session that joins both; not the webhook server.

use super::gateway::GatewaySession;
use super::http_reqwest::{capped_body, perform};
use super::http1::{Endpoint, Http1Conn};
use super::http1_pool::Http1Pool;
use super::mqtt::MqttSession;
use super::native::NativeSession;
use super::{Incoming, Outgoing, Session};
use crate::metrics::ErrorKind;
use crate::protocol::Recipient;
use crate::scenario::target::HttpTarget;
use crate::scenario::template::{Slot, Template, Value, body_for};
use crate::secrets::{Credentials, redact_url};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Requests one user may have open at once; more wait their turn in order.
const MAX_OPEN: usize = 32;

/// The run's HTTP send side, shared by every user.
pub struct HttpSetup {
    pub client: reqwest::Client,
    pub target: Arc<HttpTarget>,
    /// The target URL that a relative `url` template is joined to.
    pub base: String,
    pub credentials: Arc<Credentials>,
    pub method: reqwest::Method,
    /// Set for closed loops: each user keeps one keep-alive connection here and has one
    /// request open at a time (the lean path, `http1`), instead of the shared pool.
    pub connection: Option<Arc<Endpoint>>,
    /// Set for open models: the shared keep-alive connections to the target's host, which
    /// carry every request for it (others go through `client`).
    pub pool: Option<Arc<Http1Pool>>,
    /// The system's own ids of users, groups and direct conversations (`[target.http] ids`).
    pub ids: Option<Arc<crate::scenario::ids::IdMap>>,
    /// This run's token, `{{run}}`.
    pub run: Arc<str>,
}

/// Where a user sees its deliveries.
pub enum Receiver {
    Native(NativeSession),
    Mqtt(Box<MqttSession>),
    Gateway(GatewaySession),
    /// A webhook receiver sees them for everyone.
    Webhook,
    /// Nothing is delivered: the answer is the whole story.
    Nothing,
}

/// A pooled request's outcome and when its answer arrived (ns since the epoch; 0: not known).
type Pending = Pin<Box<dyn Future<Output = (Incoming, u64)> + Send>>;

/// A request waiting for room in the pool: its bytes for the target's host, or a reqwest
/// request for another.
enum PoolRequest {
    Lean(Vec<u8>),
    Other(Box<reqwest::RequestBuilder>),
}

/// How a user's requests reach the API.
enum Lane {
    /// The run's shared client pool, up to `MAX_OPEN` requests open at once.
    Pool {
        open: FuturesUnordered<Pending>,
        waiting: VecDeque<(PoolRequest, u64)>,
    },
    /// One keep-alive connection of the user's own, one request at a time.
    Connection(Box<Http1Conn>),
}

pub struct HttpSession {
    user: u32,
    setup: Arc<HttpSetup>,
    receiver: Receiver,
    lane: Lane,
    /// Reused while rendering a request on the lean path.
    scratch: Scratch,
    /// Signal requests under way (`[target.http.signals]`).
    signals: super::http_signal::SignalLane,
    /// Where what `next` last returned came from, for [`Session::waited`].
    last_from: HeardFrom,
}

/// Which part of the session said the last thing.
#[derive(Clone, Copy)]
enum HeardFrom {
    /// A signal request: reqwest reads without arrival stamps.
    Unstamped,
    /// The shared pool, with when the answer arrived (0: not known: reqwest read it).
    Pool(u64),
    /// The user's own connection: its answers carry arrival stamps.
    Connection,
    /// The subscription deliveries come on.
    Receiver,
}

#[derive(Default)]
struct Scratch {
    /// The message text (`{{body}}`), the request target, header lines and JSON body.
    text: String,
    url: String,
    rendered: String,
    body: String,
}

/// The values of a message's template slots.
struct Message<'a> {
    from: u32,
    to: Recipient,
    id: u64,
    t: u64,
    s: u64,
    body: &'a str,
}

impl HttpSetup {
    /// A session that sends through this API and sees deliveries on `receiver`; on the lean
    /// path its connection is opened now.
    pub async fn session(
        self: &Arc<Self>,
        user: u32,
        receiver: Receiver,
        timeout: std::time::Duration,
        source: Option<std::net::IpAddr>,
    ) -> Result<HttpSession, super::ConnectError> {
        let lane = match &self.connection {
            Some(endpoint) => Lane::Connection(Box::new(
                Http1Conn::connect(
                    endpoint.clone(),
                    timeout,
                    self.target.timeout.as_std(),
                    self.target.id.is_some(),
                    self.method == reqwest::Method::HEAD,
                    self.target.max_answer,
                    source,
                )
                .await?,
            )),
            None => Lane::Pool {
                open: FuturesUnordered::new(),
                waiting: VecDeque::new(),
            },
        };
        Ok(HttpSession {
            user,
            setup: self.clone(),
            receiver,
            lane,
            scratch: Scratch::default(),
            signals: Default::default(),
            last_from: HeardFrom::Unstamped,
        })
    }

    /// POSTs the JSON `body` to `path` on the target with the send side's headers rendered
    /// for `user`: the answer's status and up to `max_answer` bytes of its body (`Err` with
    /// the reason when the body is longer), or why no answer came.
    pub async fn post_json(
        &self,
        path: &str,
        user: u32,
        body: String,
    ) -> Result<(reqwest::StatusCode, Result<Vec<u8>, String>), reqwest::Error> {
        let m = Message {
            from: user,
            to: Recipient::User(user),
            id: 0,
            t: 0,
            s: 0,
            body: "",
        };
        let value = self.values(&m);
        let mut req = self
            .client
            .post(format!("{}{path}", self.base.trim_end_matches('/')))
            .timeout(self.target.timeout.as_std());
        for (name, v) in &self.target.headers {
            req = req.header(name.as_str(), v.render(false, &value));
        }
        let mut resp = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        Ok((status, capped_body(&mut resp, self.target.max_answer).await))
    }

    fn values<'a>(&'a self, m: &Message<'a>) -> impl Fn(Slot) -> Value<'a> + 'a {
        let (to, group) = match m.to {
            Recipient::User(u) => (Some(u as u64), None),
            Recipient::Group(g) => (None, Some(g as u64)),
            Recipient::Business(b) => (Some((crate::protocol::BUSINESS_BASE + b) as u64), None),
        };
        let maybe = |v: Option<u64>| v.map_or(Value::Null, Value::Number);
        let c = &self.credentials;
        let (from, id, t, s, body) = (m.from, m.id, m.t, m.s, m.body);
        let ids = self.ids.as_deref();
        let id_of = |found: Option<&'a str>| found.map_or(Value::Empty, Value::Text);
        move |slot: Slot| match slot {
            Slot::UserId => id_of(ids.and_then(|i| i.user(from))),
            Slot::ToId => id_of(ids.zip(to).and_then(|(i, u)| i.user(u as u32))),
            Slot::GroupId => id_of(ids.zip(group).and_then(|(i, g)| i.group(g as u32))),
            Slot::ChatId => id_of(ids.and_then(|i| match (to, group) {
                (_, Some(g)) => i.group(g as u32),
                (Some(u), None) => i.direct(from, u as u32),
                (None, None) => None,
            })),
            Slot::User | Slot::From => Value::Number(from as u64),
            Slot::To => maybe(to),
            Slot::Group => maybe(group),
            Slot::Id => Value::Number(id),
            Slot::Body => Value::Text(body),
            Slot::Seq => Value::Number(0),
            Slot::NowMs => Value::Number(s / 1000),
            Slot::NowUs => Value::Number(s),
            Slot::IntendedUs => Value::Number(t),
            Slot::Token => Value::secret(c.token_of(from)),
            Slot::Username => Value::secret(c.username_of(from)),
            Slot::Password => Value::secret(c.password_of(from)),
            Slot::Captured(_) => Value::Empty,
            Slot::Run => Value::Text(&self.run),
        }
    }

    fn request(&self, m: &Message<'_>) -> reqwest::RequestBuilder {
        let value = self.values(m);
        let target = &self.target;
        let (url_t, body_t) = self.templates(m);
        let path = url_t.render(false, &value);
        let url = if path.starts_with('/') {
            format!("{}{path}", self.base.trim_end_matches('/'))
        } else {
            path
        };
        let mut req = self
            .client
            .request(self.method.clone(), url)
            .timeout(target.timeout.as_std());
        for (name, v) in &target.headers {
            req = req.header(name.as_str(), v.render(false, &value));
        }
        if let Some(b) = body_t {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.render(true, &value));
        }
        req
    }

    /// The URL and body templates of this message: a group's own when the scenario gives
    /// them, the direct ones otherwise.
    fn templates(&self, m: &Message<'_>) -> (&Template, Option<&Template>) {
        let t = &self.target;
        match m.to {
            Recipient::Group(_) => (
                t.group_url.as_ref().unwrap_or(&t.url),
                t.group_body.as_ref().or(t.body.as_ref()),
            ),
            _ => (&t.url, t.body.as_ref()),
        }
    }

    /// The request's bytes for the user's own connection, rendered into reused buffers. A
    /// URL for another host than the connection's is refused.
    fn write_request(
        &self,
        m: &Message<'_>,
        endpoint: &Endpoint,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let value = self.values(m);
        let target = &self.target;
        let (url_t, body_t) = self.templates(m);
        scratch.url.clear();
        url_t.render_into(&mut scratch.url, false, &value);
        if scratch.url.starts_with('/') {
            scratch.url.insert_str(0, &endpoint.base_path);
        } else {
            let u = reqwest::Url::parse(&scratch.url)
                .map_err(|e| format!("`{}` is not a URL ({e})", redact_url(&scratch.url)))?;
            if !same_origin(&u, endpoint) {
                return Err(format!(
                    "`{}` is on another host than the target; a closed loop keeps one connection per user",
                    redact_url(&scratch.url)
                ));
            }
            scratch.url = match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            };
        }
        scratch.rendered.clear();
        for (name, v) in &target.headers {
            scratch.rendered.push_str(name);
            scratch.rendered.push_str(": ");
            v.render_into(&mut scratch.rendered, false, &value);
            scratch.rendered.push_str("\r\n");
        }
        scratch.body.clear();
        if let Some(b) = body_t {
            b.render_into(&mut scratch.body, true, &value);
        }
        super::http1::write_request(
            out,
            self.method.as_str(),
            &scratch.url,
            endpoint,
            &scratch.rendered,
            body_t.map(|_| scratch.body.as_bytes()),
        );
        Ok(())
    }
}

fn same_origin(u: &reqwest::Url, e: &Endpoint) -> bool {
    u.host_str() == Some(e.host.as_str()) && u.port_or_known_default() == Some(e.port)
}

impl HttpSession {
    fn start_waiting(&mut self) {
        let Lane::Pool { open, waiting } = &mut self.lane else {
            return;
        };
        while open.len() < MAX_OPEN {
            let Some((req, id)) = waiting.pop_front() else {
                return;
            };
            match (req, &self.setup.pool) {
                (PoolRequest::Lean(bytes), Some(pool)) => {
                    open.push(Box::pin(pool.clone().exchange(id, bytes)));
                }
                (PoolRequest::Lean(_), None) => open.push(Box::pin(std::future::ready((
                    Incoming::Rejected {
                        id,
                        kind: ErrorKind::Protocol,
                        detail: "no connection pool".into(),
                    },
                    0,
                )))),
                (PoolRequest::Other(req), _) => {
                    let pointer = self.setup.target.id.clone();
                    let max_answer = self.setup.target.max_answer;
                    open.push(Box::pin(async move {
                        (perform(*req, id, pointer, max_answer).await, 0)
                    }));
                }
            }
        }
    }

    /// Queues one message's request (a request that cannot be written is refused in turn).
    fn send(&mut self, from: u32, to: Recipient, id: u64, t: u64, s: u64, size: usize) {
        let mut text = std::mem::take(&mut self.scratch.text);
        text.clear();
        body_for(&mut text, id, size);
        let m = Message {
            from,
            to,
            id,
            t,
            s,
            body: &text,
        };
        match &mut self.lane {
            Lane::Pool { waiting, .. } => {
                let request = match self.setup.pool.as_deref() {
                    Some(pool) => {
                        let mut out = Vec::new();
                        // A URL for another host (or none the pool can write) goes by reqwest.
                        match self.setup.write_request(
                            &m,
                            pool.endpoint(),
                            &mut self.scratch,
                            &mut out,
                        ) {
                            Ok(()) => PoolRequest::Lean(out),
                            Err(_) => PoolRequest::Other(Box::new(self.setup.request(&m))),
                        }
                    }
                    None => PoolRequest::Other(Box::new(self.setup.request(&m))),
                };
                waiting.push_back((request, id));
                self.start_waiting();
            }
            Lane::Connection(conn) => {
                let mut out = conn.buffer();
                // Borrowed from the setup every user shares, not cloned per request.
                let written = match self.setup.connection.as_deref() {
                    Some(endpoint) => {
                        self.setup
                            .write_request(&m, endpoint, &mut self.scratch, &mut out)
                    }
                    None => Err("no connection endpoint".to_string()),
                };
                match written {
                    Ok(()) => conn.push(id, out),
                    Err(why) => conn.refuse(id, ErrorKind::Protocol, why),
                }
            }
        }
        self.scratch.text = text;
    }
}

impl HttpSession {
    /// Sends a signal as a request of its own when the scenario gives one for its kind:
    /// whether it was said (not when too many are open), or None when the scenario gives
    /// none (the signal then goes where deliveries come from).
    fn signal(&mut self, out: &Outgoing<'_>) -> Option<bool> {
        use super::http_signal::Signal;
        let setup = self.setup.clone();
        let signals = &setup.target.signals;
        let user = self.user;
        let s = match *out {
            Outgoing::Delivered(d) => signals.delivered.as_ref().map(|request| Signal {
                kind: "delivered",
                request,
                user,
                from: d.from,
                to: d.from,
                id: d.id,
                group: d.group,
            }),
            Outgoing::Read { id, from, .. } => signals.read.as_ref().map(|request| Signal {
                kind: "read",
                request,
                user,
                from,
                to: from,
                id,
                group: None,
            }),
            Outgoing::Typing { to, .. } => signals.typing.as_ref().map(|request| Signal {
                kind: "typing",
                request,
                user,
                from: user,
                to,
                id: 0,
                group: None,
            }),
            _ => None,
        };
        s.map(|s| self.signals.push(&setup, s))
    }
}

impl Session for HttpSession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        match out {
            Outgoing::Message {
                id,
                from,
                to,
                t,
                s,
                body,
                ..
            } => {
                self.send(from, to, id, t, s, body.len());
                true
            }
            other => match self.signal(&other) {
                Some(said) => said,
                None => match &mut self.receiver {
                    Receiver::Native(r) => r.push(other),
                    Receiver::Mqtt(r) => r.push(other),
                    Receiver::Gateway(r) => r.push(other),
                    Receiver::Webhook | Receiver::Nothing => false,
                },
            },
        }
    }

    async fn next(&mut self) -> Incoming {
        let pointer = self.setup.target.id.as_deref();
        let (lane, receiver) = (&mut self.lane, &mut self.receiver);
        let receive = async {
            match receiver {
                Receiver::Native(r) => r.next().await,
                Receiver::Mqtt(r) => r.next().await,
                Receiver::Gateway(r) => r.next().await,
                Receiver::Webhook | Receiver::Nothing => std::future::pending().await,
            }
        };
        let signals = &mut self.signals;
        let (result, from) = match lane {
            Lane::Pool { open, .. } => {
                let has_open = !open.is_empty();
                tokio::select! {
                    biased;
                    Some((done, arrived_ns)) = open.next(), if has_open => (done, HeardFrom::Pool(arrived_ns)),
                    r = receive => (r, HeardFrom::Receiver),
                    s = signals.next() => (s, HeardFrom::Unstamped),
                }
            }
            Lane::Connection(conn) => tokio::select! {
                biased;
                (id, outcome) = conn.next() => (super::http1_answer::judge(id, outcome, pointer), HeardFrom::Connection),
                r = receive => (r, HeardFrom::Receiver),
                s = signals.next() => (s, HeardFrom::Unstamped),
            },
        };
        self.last_from = from;
        self.start_waiting();
        result
    }

    async fn close(&mut self) {
        let requests = async {
            if let Lane::Pool { open, .. } = &mut self.lane {
                while let Some(_done) = open.next().await {}
            }
        };
        // Signals counted as said (read receipts, delivery acks, typing) are made before the
        // user leaves, not dropped with it.
        tokio::join!(requests, self.signals.drain());
        match &mut self.receiver {
            Receiver::Native(r) => r.close().await,
            Receiver::Mqtt(r) => r.close().await,
            Receiver::Gateway(r) => r.close().await,
            Receiver::Webhook | Receiver::Nothing => {}
        }
    }

    fn confirms_sends(&self) -> bool {
        true
    }

    fn waited(&self) -> Option<std::time::Duration> {
        match (self.last_from, &self.lane, &self.receiver) {
            (HeardFrom::Connection, Lane::Connection(conn), _) => conn.waited(),
            (HeardFrom::Pool(arrived_ns), _, _) => super::stamped_tcp::waited_since(arrived_ns),
            (HeardFrom::Receiver, _, Receiver::Native(r)) => r.waited(),
            (HeardFrom::Receiver, _, Receiver::Mqtt(r)) => r.waited(),
            (HeardFrom::Receiver, _, Receiver::Gateway(r)) => r.waited(),
            _ => None,
        }
    }
}

impl std::fmt::Debug for HttpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpSession(user {})", self.user)
    }
}

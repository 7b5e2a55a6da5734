//! Any HTTP messaging API: each message is one templated request (method, URL, headers, JSON
//! body) whose 2xx answer confirms it; deliveries are seen either on a subscription the user
//! holds (chatload's WebSocket, a gateway, MQTT) or by a webhook receiver chatload runs
//! (`webhook`). Owns the send side and the session that joins both; not the webhook server.

use super::gateway::GatewaySession;
use super::mqtt::MqttSession;
use super::native::NativeSession;
use super::secrets::Credentials;
use super::template::{Slot, Value, body_for};
use super::{Incoming, Outgoing, Session};
use crate::metrics::ErrorKind;
use crate::protocol::Recipient;
use crate::scenario::target::HttpTarget;
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
}

/// Where a user sees its deliveries.
pub enum Receiver {
    Native(NativeSession),
    Mqtt(MqttSession),
    Gateway(GatewaySession),
    /// A webhook receiver sees them for everyone.
    Webhook,
}

type Pending = Pin<Box<dyn Future<Output = Incoming> + Send>>;

pub struct HttpSession {
    user: u32,
    setup: Arc<HttpSetup>,
    receiver: Receiver,
    open: FuturesUnordered<Pending>,
    waiting: VecDeque<reqwest::RequestBuilder>,
    /// Ids of the waiting requests, in the same order.
    waiting_ids: VecDeque<u64>,
}

pub fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::RequestTimeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return super::connector::classify_io(io);
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        source = s.source();
    }
    if e.is_connect() {
        ErrorKind::ConnectFailed
    } else {
        ErrorKind::Protocol
    }
}

impl HttpSetup {
    /// A session that sends through this API and sees deliveries on `receiver`.
    pub fn session(self: &Arc<Self>, user: u32, receiver: Receiver) -> HttpSession {
        HttpSession {
            user,
            setup: self.clone(),
            receiver,
            open: FuturesUnordered::new(),
            waiting: VecDeque::new(),
            waiting_ids: VecDeque::new(),
        }
    }

    fn request(
        &self,
        from: u32,
        to: Recipient,
        id: u64,
        t: u64,
        s: u64,
        size: usize,
    ) -> reqwest::RequestBuilder {
        let (to, group) = match to {
            Recipient::User(u) => (Some(u as u64), None),
            Recipient::Group(g) => (None, Some(g as u64)),
            Recipient::Business(b) => (Some((crate::protocol::BUSINESS_BASE + b) as u64), None),
        };
        let maybe = |v: Option<u64>| v.map_or(Value::Null, Value::Number);
        let mut body = String::new();
        body_for(&mut body, id, size);
        let c = &self.credentials;
        let value = |slot: Slot| match slot {
            Slot::User | Slot::From => Value::Number(from as u64),
            Slot::To => maybe(to),
            Slot::Group => maybe(group),
            Slot::Id => Value::Number(id),
            Slot::Body => Value::Text(&body),
            Slot::Seq => Value::Number(0),
            Slot::NowMs => Value::Number(s / 1000),
            Slot::NowUs => Value::Number(s),
            Slot::IntendedUs => Value::Number(t),
            Slot::Token => Value::secret(&c.token),
            Slot::Username => Value::secret(&c.username),
            Slot::Password => Value::secret(&c.password),
        };
        let target = &self.target;
        let path = target.url.render(false, value);
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
            req = req.header(name.as_str(), v.render(false, value));
        }
        if let Some(b) = &target.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.render(true, value));
        }
        req
    }
}

async fn perform(req: reqwest::RequestBuilder, id: u64, id_pointer: Option<String>) -> Incoming {
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Incoming::Rejected {
                id,
                kind: classify(&e),
                detail: super::secrets::redact(&e.to_string()),
            };
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Incoming::Rejected {
            id,
            kind: ErrorKind::for_status(status.as_u16()),
            detail: super::secrets::redact(&format!(
                "HTTP {status}: {}",
                text.chars().take(160).collect::<String>()
            )),
        };
    }
    if let Some(p) = id_pointer {
        // The API's own id is not needed to measure; an answer without one is a protocol
        // error worth counting, since the API promised it.
        let found = resp
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.pointer(&p).cloned());
        if found.is_none() {
            return Incoming::Rejected {
                id,
                kind: ErrorKind::Protocol,
                detail: format!("a 2xx answer without a message id at {p}"),
            };
        }
    }
    Incoming::Accepted { id }
}

impl HttpSession {
    fn start_waiting(&mut self) {
        while self.open.len() < MAX_OPEN {
            let (Some(req), Some(id)) = (self.waiting.pop_front(), self.waiting_ids.pop_front())
            else {
                return;
            };
            let pointer = self.setup.target.id.clone();
            self.open.push(Box::pin(perform(req, id, pointer)));
        }
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
                let req = self.setup.request(from, to, id, t, s, body.len());
                self.waiting.push_back(req);
                self.waiting_ids.push_back(id);
                self.start_waiting();
                true
            }
            other => match &mut self.receiver {
                Receiver::Native(r) => r.push(other),
                Receiver::Mqtt(r) => r.push(other),
                Receiver::Gateway(r) => r.push(other),
                Receiver::Webhook => false,
            },
        }
    }

    async fn next(&mut self) -> Incoming {
        let has_open = !self.open.is_empty();
        let (open, receiver) = (&mut self.open, &mut self.receiver);
        let receive = async {
            match receiver {
                Receiver::Native(r) => r.next().await,
                Receiver::Mqtt(r) => r.next().await,
                Receiver::Gateway(r) => r.next().await,
                Receiver::Webhook => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            biased;
            Some(done) = open.next(), if has_open => Some(done),
            r = receive => Some(r),
        };
        self.start_waiting();
        result.unwrap_or(Incoming::Nothing)
    }

    async fn close(&mut self) {
        while let Some(_done) = self.open.next().await {}
        match &mut self.receiver {
            Receiver::Native(r) => r.close().await,
            Receiver::Mqtt(r) => r.close().await,
            Receiver::Gateway(r) => r.close().await,
            Receiver::Webhook => {}
        }
    }

    fn confirms_sends(&self) -> bool {
        true
    }
}

impl std::fmt::Debug for HttpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpSession(user {})", self.user)
    }
}

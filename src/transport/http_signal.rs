//! Signals an HTTP API takes as requests of their own (`[target.http.signals]`): a
//! recipient's delivery ack, read receipt or typing indicator is one templated request
//! through the run's shared client, with the send side's headers and the user's own
//! credentials. A signal's answer confirms nothing chatload counts; a refusal is an error
//! of its kind. Owns these requests; not the message requests (`http`).

use super::Incoming;
use super::http::HttpSetup;
use super::http_error::{classify, describe};
use crate::metrics::ErrorKind;
use crate::scenario::http_signals::SignalRequest;
use crate::scenario::template::{Slot, Value};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::future::Future;
use std::pin::Pin;

/// Signal requests one user may have open at once; a signal beyond them is not said (the
/// caller counts only what was).
const MAX_OPEN: usize = 32;

/// What a signal is about.
pub struct Signal<'a> {
    pub kind: &'static str,
    pub request: &'a SignalRequest,
    /// The user who signals, the sender of the message it is about, whom it is for.
    pub user: u32,
    pub from: u32,
    pub to: u32,
    pub id: u64,
    pub group: Option<u32>,
}

type Open = Pin<Box<dyn Future<Output = Option<(ErrorKind, String)>> + Send>>;

#[derive(Default)]
pub struct SignalLane {
    open: FuturesUnordered<Open>,
}

impl SignalLane {
    /// Starts the signal's request; false when too many are open already.
    pub fn push(&mut self, setup: &HttpSetup, s: Signal<'_>) -> bool {
        if self.open.len() >= MAX_OPEN {
            return false;
        }
        let c = &setup.credentials;
        let ids = setup.ids.as_deref();
        fn id_of(found: Option<&str>) -> Value<'_> {
            found.map_or(Value::Empty, Value::Text)
        }
        let value = |slot: Slot| match slot {
            Slot::UserId => id_of(ids.and_then(|i| i.user(s.user))),
            Slot::ToId => id_of(ids.and_then(|i| i.user(s.to))),
            Slot::GroupId => id_of(ids.zip(s.group).and_then(|(i, g)| i.group(g))),
            Slot::ChatId => id_of(ids.and_then(|i| match s.group {
                Some(g) => i.group(g),
                None => i.direct(s.user, s.to),
            })),
            Slot::User => Value::Number(s.user as u64),
            Slot::From => Value::Number(s.from as u64),
            Slot::To => Value::Number(s.to as u64),
            Slot::Group => s.group.map_or(Value::Null, |g| Value::Number(g as u64)),
            Slot::Id => Value::Number(s.id),
            Slot::Token => Value::secret(c.token_of(s.user)),
            Slot::Username => Value::secret(c.username_of(s.user)),
            Slot::Password => Value::secret(c.password_of(s.user)),
            Slot::Seq | Slot::NowMs | Slot::NowUs | Slot::IntendedUs => Value::Number(0),
            Slot::Body | Slot::Captured(_) => Value::Empty,
            Slot::Run => Value::Text(&setup.run),
        };
        let path = s.request.url.render(false, value);
        let url = if path.starts_with('/') {
            format!("{}{path}", setup.base.trim_end_matches('/'))
        } else {
            path
        };
        let method = reqwest::Method::from_bytes(s.request.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let mut req = setup
            .client
            .request(method, url)
            .timeout(setup.target.timeout.as_std());
        for (name, v) in &setup.target.headers {
            req = req.header(name.as_str(), v.render(false, value));
        }
        if let Some(b) = &s.request.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.render(true, value));
        }
        let kind = s.kind;
        self.open.push(Box::pin(async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some((
                    ErrorKind::for_status(r.status().as_u16()),
                    format!("a {kind} signal was answered HTTP {}", r.status()),
                )),
                Err(e) => Some((
                    classify(&e),
                    format!("a {kind} signal failed: {}", describe(&e)),
                )),
            }
        }));
        true
    }

    /// The next signal that failed; pending while none is open.
    /// Waits for every signal request under way (each bounded by the target's timeout): a
    /// signal chatload counted as said is made even when its user leaves at once.
    pub async fn drain(&mut self) {
        while self.open.next().await.is_some() {}
    }

    pub async fn next(&mut self) -> Incoming {
        match self.open.next().await {
            None => std::future::pending().await,
            Some(None) => Incoming::Nothing,
            Some(Some((kind, detail))) => Incoming::Failed { kind, detail },
        }
    }
}

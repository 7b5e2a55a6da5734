//! Deliveries seen by a webhook: for an HTTP messaging API that posts each delivered message
//! to a URL instead of pushing it over a connection, chatload listens there, finds the
//! recipient and its message in each body (JSON pointers from `[target.http.webhook]`) and
//! measures it as a virtual user would. Answers each batch with the scenario's status and
//! JSON body (`{}` unless it says), and takes a batch the target pushes again under a
//! transaction id already taken only once, counting it (Matrix application services and
//! other at-least-once senders retry a batch until it is answered). Before the run it can
//! ask the target to reach it (`ping`), so a sender that gave up on it is back first. Owns
//! that mapping, the de-duplication and the ping; the socket is `json_listener`'s, the
//! ping's request the HTTP transport's.

use super::context::RunContext;
use super::json_listener::{self, Answer, JsonListener};
use super::vu::frames::record_delivery;
use crate::metrics::ErrorKind;
use crate::scenario::ids::Conversation;
use crate::scenario::target::{TransactionId, Webhook};
use crate::scenario::template::{Frame, message_id, number};
use crate::scenario::webhook::DeliveryTo;
use crate::transport::Delivery;
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// How many transaction ids are remembered to tell a redelivered batch from a new one: a
/// sender retries a batch within seconds to minutes, long before this many newer ones.
const REMEMBERED_TRANSACTIONS: usize = 65_536;

/// The listener, and how many batches the target pushed again under a transaction id
/// already taken (taken once, answered as before).
pub struct DeliveryWebhook {
    pub listener: JsonListener,
    redelivered: Arc<AtomicU64>,
}

impl DeliveryWebhook {
    /// Stops listening; returns the redelivered batches.
    pub fn stop(self) -> u64 {
        self.listener.stop();
        self.redelivered.load(Relaxed)
    }
}

/// The transaction ids taken most recently, as 64-bit hashes (bounded memory whatever the
/// ids' length: 65,536 of them take about 1.5 MiB).
struct Seen {
    hasher: RandomState,
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl Seen {
    fn new() -> Self {
        Seen {
            hasher: RandomState::new(),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// True when `id` is new (and now remembered).
    fn first_time(&mut self, id: &str) -> bool {
        let h = self.hasher.hash_one(id);
        if !self.set.insert(h) {
            return false;
        }
        self.order.push_back(h);
        if self.order.len() > REMEMBERED_TRANSACTIONS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// Starts listening where the scenario says; the URL to give the target is printed by the
/// caller.
pub async fn start(ctx: Arc<RunContext>, webhook: &Webhook) -> std::io::Result<DeliveryWebhook> {
    let w = webhook.clone();
    let redelivered = Arc::new(AtomicU64::new(0));
    let seen = Mutex::new(Seen::new());
    let counted = redelivered.clone();
    let answer = Answer {
        status: hyper::StatusCode::from_u16(webhook.answer_status).unwrap_or(hyper::StatusCode::OK),
        body: bytes::Bytes::from(webhook.answer_body.clone()),
    };
    let listener = json_listener::start(
        &webhook.listen,
        ctx,
        Arc::new(move |ctx: &RunContext, path: &str, v: &Value| {
            // A body with no batch in it (a homeserver's ping, a sender's check) is answered
            // but is no transaction: its path or id is not remembered, nor counted again.
            if !holds_batch(&w, v) {
                return;
            }
            if is_redelivery(ctx, &w, &seen, path, v) {
                counted.fetch_add(1, Relaxed);
            } else {
                absorb(ctx, &w, v);
            }
        }),
        answer,
    )
    .await?;
    Ok(DeliveryWebhook {
        listener,
        redelivered,
    })
}

/// Whether `v` carries deliveries where the scenario says a batch is (`each`); without
/// `each` every body is one delivery.
fn holds_batch(w: &Webhook, v: &Value) -> bool {
    w.each
        .as_ref()
        .is_none_or(|p| v.pointer(p).is_some_and(Value::is_array))
}

/// How a webhook ping (`[target.http.webhook] ping`) failed: the target answered something
/// else than 2xx, or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "the target answered the webhook ping (POST {path}) HTTP {status}: {said}; it must reach chatload's delivery webhook at http://{webhook}/ (a Matrix application service's `url`) before the run can count deliveries"
    )]
    Answered {
        path: String,
        status: reqwest::StatusCode,
        said: String,
        webhook: std::net::SocketAddr,
    },
    #[error("the webhook ping (POST {path}) got no answer from the target: {reason}")]
    NoAnswer { path: String, reason: String },
}

/// Asks the target to reach the webhook at `webhook` before the first user starts, and
/// waits for its answer. A Matrix homeserver that counted the application service as down
/// (a push that found nothing listening between runs) holds back every later event until
/// its next retry, up to minutes later, which the run would count as lost; its ping answers
/// only after it reached the service, and then sends what it held back at once.
pub async fn ping(
    ctx: &RunContext,
    path: &str,
    webhook: std::net::SocketAddr,
) -> Result<(), PingError> {
    let Some(http) = ctx.connector.http() else {
        return Ok(());
    };
    let segment = ctx.segment;
    let user = (0..ctx.population.users())
        .find(|u| segment.owns(*u))
        .unwrap_or(0);
    let body = serde_json::json!({ "transaction_id": format!("chatload-{}", http.run) });
    match http.post_json(path, user, body.to_string()).await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => Err(PingError::Answered {
            path: path.to_string(),
            status,
            said: match body {
                Ok(b) if b.is_empty() => "an empty body".to_string(),
                Ok(b) => crate::secrets::excerpt(&String::from_utf8_lossy(&b), 300),
                Err(too_long) => too_long,
            },
            webhook,
        }),
        Err(e) => Err(PingError::NoAnswer {
            path: path.to_string(),
            reason: crate::transport::http_error::describe(&e),
        }),
    }
}

/// The batch's transaction id (the last segment of `path`, or a string or number at a
/// pointer in the body).
fn transaction_id(t: &TransactionId, path: &str, v: &Value) -> Option<String> {
    match t {
        TransactionId::Path => path
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        TransactionId::Pointer(p) => match v.pointer(p)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        },
    }
}

/// Whether this batch was taken before under the same transaction id. A batch without one,
/// when the scenario says where it is, is a protocol error and is taken.
fn is_redelivery(ctx: &RunContext, w: &Webhook, seen: &Mutex<Seen>, path: &str, v: &Value) -> bool {
    let Some(t) = &w.transaction else {
        return false;
    };
    let Some(id) = transaction_id(t, path, v) else {
        ctx.recorders.local().error(ErrorKind::Protocol, || {
            format!(
                "a delivery webhook without its transaction id ({}): {}",
                match t {
                    TransactionId::Path => format!("no last path segment in {path}"),
                    TransactionId::Pointer(p) => format!("nothing at {p}"),
                },
                crate::secrets::excerpt(&v.to_string(), 160)
            )
        });
        return false;
    };
    !seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .first_time(&id)
}

fn absorb(ctx: &RunContext, w: &Webhook, v: &Value) {
    let items: Vec<&Value> = match &w.each {
        Some(p) => v
            .pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        None => vec![v],
    };
    let now = ctx.now_us();
    let ids = ctx.connector.ids();
    for item in items {
        // Other events of the stream (a Matrix member or state event) are no deliveries.
        if w.only
            .as_ref()
            .is_some_and(|m| !m.matches(Frame::Json(item)))
        {
            continue;
        }
        let id = item.pointer(&w.id).and_then(message_id);
        let from = w.from.as_ref().and_then(|p| item.pointer(p)).and_then(|f| {
            f.as_str()
                .and_then(|s| ids.and_then(|i| i.user_of(s)))
                .or_else(|| number(f))
        });
        let recipients = match &w.recipient {
            DeliveryTo::Recipient(p) => item.pointer(p).and_then(number).map(Recipients::One),
            DeliveryTo::Conversation(p) => item
                .pointer(p)
                .and_then(Value::as_str)
                .and_then(|c| ids?.conversation_of(c))
                .map(Recipients::Of),
        };
        let (Some(recipients), Some(id)) = (recipients, id) else {
            ctx.recorders.local().error(ErrorKind::Protocol, || {
                format!(
                    "a delivery webhook without a recipient ({}) or an id at {}: {}",
                    match &w.recipient {
                        DeliveryTo::Recipient(p) => format!("a user at {p}"),
                        DeliveryTo::Conversation(p) =>
                            format!("a conversation of the ids file at {p}"),
                    },
                    w.id,
                    crate::secrets::excerpt(&item.to_string(), 160)
                )
            });
            continue;
        };
        let from = from.unwrap_or(u32::MAX);
        let d = |group: Option<u32>| Delivery {
            id,
            from,
            group,
            t: None,
            s: None,
            seq: None,
            wamid: 0,
        };
        // Pushed to a receiver that is always there: due from the intended time.
        match recipients {
            Recipients::One(user) => {
                record_delivery(ctx, user, &d(None), now, 0);
            }
            Recipients::Of(Conversation::Direct(a, b)) => {
                for user in [a, b].into_iter().filter(|u| *u != from) {
                    record_delivery(ctx, user, &d(None), now, 0);
                }
            }
            Recipients::Of(Conversation::Group(g)) => {
                let members = ctx.population.groups().get(g as usize).cloned();
                for user in members
                    .iter()
                    .flat_map(|m| m.iter())
                    .filter(|u| **u != from)
                {
                    record_delivery(ctx, *user, &d(Some(g)), now, 0);
                }
            }
        }
    }
}

enum Recipients {
    One(u32),
    Of(Conversation),
}

/// The HTTP transport's delivery webhook, when the scenario takes deliveries that way.
pub async fn start_for_run(
    ctx: &Arc<RunContext>,
    quiet: bool,
) -> Result<Option<DeliveryWebhook>, super::RunError> {
    let crate::scenario::target::Protocol::Http(h) = &ctx.scenario.target.protocol else {
        return Ok(None);
    };
    let crate::scenario::target::HttpDeliveries::Webhook(w) = &h.deliveries else {
        return Ok(None);
    };
    let listener = start(ctx.clone(), w).await.map_err(|e| {
        super::RunError::Setup(format!(
            "cannot listen for delivery webhooks at {} ({e}); choose another `listen` address",
            w.listen
        ))
    })?;
    if !quiet {
        eprintln!(
            "chatload: delivery webhooks are taken at http://{}/",
            listener.listener.addr
        );
    }
    if let Some(path) = &w.ping {
        let pinged = ping(ctx, path, listener.listener.addr).await;
        if let Err(e) = pinged {
            listener.stop();
            return Err(super::RunError::Refused(e.to_string()));
        }
    }
    Ok(Some(listener))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transaction_id_comes_from_the_path_or_the_body() {
        let v = json!({"txn": "t-7", "n": 12, "events": []});
        let path = "/_matrix/app/v1/transactions/1234";
        assert_eq!(
            transaction_id(&TransactionId::Path, path, &v).as_deref(),
            Some("1234")
        );
        assert_eq!(transaction_id(&TransactionId::Path, "/", &v), None);
        let at = |p: &str| transaction_id(&TransactionId::Pointer(p.into()), path, &v);
        assert_eq!(at("/txn").as_deref(), Some("t-7"));
        assert_eq!(at("/n").as_deref(), Some("12"));
        assert_eq!(at("/events"), None);
        assert_eq!(at("/missing"), None);
    }

    #[test]
    fn only_a_body_with_its_batch_is_a_transaction() {
        let mut w = Webhook {
            listen: "127.0.0.1:0".into(),
            recipient: DeliveryTo::Conversation("/room_id".into()),
            only: None,
            id: "/content/body".into(),
            from: None,
            each: Some("/events".into()),
            answer_status: 200,
            answer_body: "{}".into(),
            transaction: Some(TransactionId::Path),
            ping: None,
        };
        // A homeserver's ping, then a transaction, then a batch with no events in it.
        assert!(!holds_batch(&w, &json!({"transaction_id": "chatload-1"})));
        assert!(holds_batch(
            &w,
            &json!({"events": [{"type": "m.room.message"}]})
        ));
        assert!(holds_batch(&w, &json!({"events": []})));
        assert!(!holds_batch(&w, &json!({"events": {}})));
        w.each = None;
        assert!(holds_batch(&w, &json!({"transaction_id": "chatload-1"})));
    }

    #[test]
    fn a_transaction_is_taken_once_and_memory_stays_bounded() {
        let mut seen = Seen::new();
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        for i in 0..REMEMBERED_TRANSACTIONS {
            assert!(seen.first_time(&format!("x{i}")));
        }
        assert_eq!(seen.set.len(), REMEMBERED_TRANSACTIONS);
        assert!(
            seen.first_time("a"),
            "forgotten once 65,536 newer ones came"
        );
    }
}

//! `[target.http.webhook]`: where chatload listens for an HTTP API's pushed deliveries, how
//! a delivery looks in a batch, what chatload answers, and where a batch's transaction id is
//! (so a batch pushed again is taken once). The file form and its compiled form; the
//! listener itself is the engine's.

use super::compile::{Result, issue};
use serde::{Deserialize, Serialize};
use toml::Spanned;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub listen: Option<String>,
    /// JSON pointer to the recipient user, to chatload's id, and to the sender.
    #[schemars(with = "Option<String>")]
    pub recipient: Option<Spanned<String>>,
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub from: Option<String>,
    /// JSON pointer to an array when one POST carries several deliveries.
    pub each: Option<String>,
    /// Instead of `recipient`: a JSON pointer to the conversation an event was posted in
    /// (Matrix's "/room_id"), read through `[target.http] ids`; the delivery is then every
    /// member's but the sender's (both users of a direct conversation are its members).
    #[schemars(with = "Option<String>")]
    pub conversation: Option<Spanned<String>>,
    /// Only items where the value at `pointer` equals `equals` are deliveries (Matrix:
    /// `{ pointer = "/type", equals = "m.room.message" }`); others are passed over.
    pub only: Option<super::gateway::MatchSection>,
    /// The status chatload answers a webhook it took with (default 200).
    #[schemars(with = "Option<i64>")]
    pub answer_status: Option<Spanned<i64>>,
    /// The JSON body of that answer (default `{}`, which Matrix application services,
    /// Slack-style and Meta-style senders accept).
    #[schemars(with = "Option<String>")]
    pub answer_body: Option<Spanned<String>>,
    /// Where a pushed batch's transaction id is: a JSON pointer into the body ("/txn_id"), or
    /// "path" for the last segment of the request's path (Matrix's
    /// `PUT /transactions/{txnId}`). A batch whose id was taken before is a redelivery: it is
    /// answered as before, counted, and not taken again.
    #[schemars(with = "Option<String>")]
    pub transaction: Option<Spanned<String>>,
    /// A path on the target that chatload POSTs `{"transaction_id": "..."}` to, with the
    /// send side's headers, once its webhook listens and before the first user starts; the
    /// target answers 2xx only after it reached the webhook. Matrix:
    /// "/_matrix/client/v1/appservice/<registration id>/ping", which also makes a
    /// homeserver that counted the service as down send what it held back at once. Another
    /// answer stops the run with what the target said.
    #[schemars(with = "Option<String>")]
    pub ping: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub listen: String,
    pub recipient: DeliveryTo,
    pub only: Option<crate::template::Matcher>,
    pub id: String,
    pub from: Option<String>,
    pub each: Option<String>,
    pub answer_status: u16,
    pub answer_body: String,
    pub transaction: Option<TransactionId>,
    /// The target's path that makes it reach the webhook before the run (`ping`).
    pub ping: Option<String>,
}

/// Whom a pushed delivery is for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryTo {
    /// The user at this JSON pointer.
    Recipient(String),
    /// Every member but the sender of the conversation at this JSON pointer.
    Conversation(String),
}

/// Where a pushed batch carries its transaction id.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionId {
    /// The last segment of the request's path.
    Path,
    /// A JSON pointer into the body.
    Pointer(String),
}

/// The longest webhook answer body a scenario may give.
const MAX_ANSWER_BODY: usize = 64 << 10;

pub(crate) fn compile(w: &WebhookSection) -> Result<Webhook> {
    let answer_status = match &w.answer_status {
        None => 200,
        Some(v) if (200..=599).contains(v.get_ref()) => *v.get_ref() as u16,
        Some(v) => {
            return issue(
                v.span(),
                format!(
                    "answer_status = {}: give an HTTP status from 200 to 599",
                    v.get_ref()
                ),
            );
        }
    };
    let answer_body = match &w.answer_body {
        None => "{}".to_string(),
        Some(b) if b.get_ref().len() > MAX_ANSWER_BODY => {
            return issue(
                b.span(),
                format!("answer_body is longer than {MAX_ANSWER_BODY} bytes"),
            );
        }
        Some(b) => {
            if let Err(e) = serde_json::from_str::<serde_json::Value>(b.get_ref()) {
                return issue(b.span(), format!("answer_body is not JSON: {e}"));
            }
            b.get_ref().clone()
        }
    };
    let transaction = match &w.transaction {
        None => None,
        Some(t) if t.get_ref() == "path" => Some(TransactionId::Path),
        Some(t) if t.get_ref().starts_with('/') => {
            Some(TransactionId::Pointer(t.get_ref().clone()))
        }
        Some(t) => {
            return issue(
                t.span(),
                format!(
                    "transaction = \"{}\": give a JSON pointer into the body (\"/txn_id\") or \"path\" (the last segment of the request's path)",
                    t.get_ref()
                ),
            );
        }
    };
    let ping = match &w.ping {
        None => None,
        Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(char::is_whitespace) => {
            Some(p.get_ref().clone())
        }
        Some(p) => {
            return issue(
                p.span(),
                format!(
                    "ping = \"{}\": give a path on the target, starting with / (Matrix: \"/_matrix/client/v1/appservice/<registration id>/ping\")",
                    p.get_ref()
                ),
            );
        }
    };
    let recipient = match (&w.recipient, &w.conversation) {
        (Some(r), None) => DeliveryTo::Recipient(r.get_ref().clone()),
        (None, Some(c)) => DeliveryTo::Conversation(c.get_ref().clone()),
        (Some(_), Some(c)) => {
            return issue(
                c.span(),
                "give either `recipient` (a user in each delivery) or `conversation` (a conversation whose members it is for), not both",
            );
        }
        (None, None) => {
            return issue(
                w.id.span(),
                "[target.http.webhook] needs `recipient` (a JSON pointer to the user a delivery is for) or `conversation`",
            );
        }
    };
    let only = match &w.only {
        None => None,
        Some(m) => match (&m.pointer, &m.equals, &m.pattern) {
            (Some(p), Some(e), None) => Some(crate::template::Matcher::Pointer {
                pointer: p.get_ref().clone(),
                equals: serde_json::to_value(e).unwrap_or(serde_json::Value::Null),
            }),
            (_, _, Some(p)) => {
                return issue(
                    p.span(),
                    "webhook bodies are JSON: `only` takes `pointer` and `equals`",
                );
            }
            (p, _, None) => {
                return issue(
                    p.as_ref().map_or(0..0, |p| p.span()),
                    "`only` needs `pointer` and `equals`",
                );
            }
        },
    };
    Ok(Webhook {
        listen: w.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into()),
        recipient,
        only,
        id: w.id.get_ref().clone(),
        from: w.from.clone(),
        each: w.each.clone(),
        answer_status,
        answer_body,
        transaction,
        ping,
    })
}

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
    pub recipient: String,
    pub id: String,
    pub from: Option<String>,
    /// JSON pointer to an array when one POST carries several deliveries.
    pub each: Option<String>,
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
}

#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub listen: String,
    pub recipient: String,
    pub id: String,
    pub from: Option<String>,
    pub each: Option<String>,
    pub answer_status: u16,
    pub answer_body: String,
    pub transaction: Option<TransactionId>,
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
    Ok(Webhook {
        listen: w.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into()),
        recipient: w.recipient.clone(),
        id: w.id.clone(),
        from: w.from.clone(),
        each: w.each.clone(),
        answer_status,
        answer_body,
        transaction,
    })
}

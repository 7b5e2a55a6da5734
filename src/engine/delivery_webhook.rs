//! Deliveries seen by a webhook: for an HTTP messaging API that posts each delivered message
//! to a URL instead of pushing it over a connection, chatload listens there, finds the
//! recipient and its message in each body (JSON pointers from `[target.http.webhook]`) and
//! measures it as a virtual user would. Owns that mapping; the socket is `json_listener`'s.

use super::context::RunContext;
use super::json_listener::{self, JsonListener};
use super::vu::frames::record_delivery;
use crate::metrics::ErrorKind;
use crate::scenario::target::Webhook;
use crate::scenario::template::{message_id, number};
use crate::transport::Delivery;
use serde_json::Value;
use std::sync::Arc;

/// Starts listening where the scenario says; the URL to give the target is printed by the
/// caller.
pub async fn start(ctx: Arc<RunContext>, webhook: &Webhook) -> std::io::Result<JsonListener> {
    let w = webhook.clone();
    json_listener::start(
        &webhook.listen,
        ctx,
        Arc::new(move |ctx: &RunContext, v: &Value| absorb(ctx, &w, v)),
    )
    .await
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
    for item in items {
        let user = item.pointer(&w.recipient).and_then(number);
        let id = item.pointer(&w.id).and_then(message_id);
        let (Some(user), Some(id)) = (user, id) else {
            ctx.recorders.local().error(ErrorKind::Protocol, || {
                format!(
                    "a delivery webhook without a recipient at {} or an id at {}: {}",
                    w.recipient,
                    w.id,
                    crate::secrets::excerpt(&item.to_string(), 160)
                )
            });
            continue;
        };
        let from = w
            .from
            .as_ref()
            .and_then(|p| item.pointer(p))
            .and_then(number)
            .unwrap_or(u32::MAX);
        let d = Delivery {
            id,
            from,
            group: None,
            t: None,
            s: None,
            seq: None,
            wamid: 0,
        };
        // Pushed to a receiver that is always there: due from the intended time.
        record_delivery(ctx, user, &d, now, 0);
    }
}

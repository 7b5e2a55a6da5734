//! chatload's webhook receiver: the HTTP endpoint the business API posts statuses and inbound
//! messages to. Joins every status to the send it belongs to (by the correlation in
//! `biz_opaque_callback_data`) and every inbound message to the consumer's send (by its id),
//! and measures both. Owns the receiving socket; the API client is in `client`.

use crate::engine::context::RunContext;
use crate::engine::json_listener::{self, JsonListener};
use crate::metrics::{ErrorKind, Metric, Received};
use crate::protocol::BUSINESS_BASE;
use crate::protocol::id::pattern_of;
use crate::server::business::{parse_correlation, parse_inbound_wamid};
use serde_json::Value;
use std::sync::Arc;

/// A running receiver; stops when its task is aborted.
pub struct WebhookReceiver(JsonListener);

impl WebhookReceiver {
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.0.addr)
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

/// Listens at `addr` (HOST:PORT; port 0 picks a free one); the URL registered with the
/// target is the address actually bound.
pub async fn start(ctx: Arc<RunContext>, addr: &str) -> std::io::Result<WebhookReceiver> {
    let listener = json_listener::start(
        addr,
        ctx,
        Arc::new(|ctx: &RunContext, _: &str, v: &Value| absorb(ctx, v)),
        json_listener::Answer::default(),
    )
    .await?;
    Ok(WebhookReceiver(listener))
}

/// Takes in one webhook envelope (`entry[].changes[].value`).
pub fn absorb(ctx: &RunContext, v: &Value) {
    let entries = v["entry"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for entry in entries {
        let changes = entry["changes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for change in changes {
            let value = &change["value"];
            let business: Option<u32> = value["metadata"]["phone_number_id"]
                .as_str()
                .and_then(|s| s.parse().ok());
            for s in value["statuses"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                status(ctx, s);
            }
            for m in value["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                inbound(ctx, business, m);
            }
        }
    }
}

fn status(ctx: &RunContext, s: &Value) {
    let now = ctx.now_us();
    let patterns = ctx.scenario.patterns.len();
    let joined = s["biz_opaque_callback_data"]
        .as_str()
        .and_then(parse_correlation)
        .filter(|(id, _, _)| ctx.issued_pattern(*id).is_some());
    let mut rec = ctx.recorders.local();
    let Some((id, intended, _)) = joined else {
        rec.counters[patterns].unexpected_statuses += 1;
        return;
    };
    let p = (pattern_of(id) as usize).min(patterns);
    let since = now.saturating_sub(intended);
    match s["status"].as_str() {
        Some("sent") => {
            rec.counters[p].status_sent += 1;
            rec.record(p, Metric::StatusSent, since);
        }
        Some("delivered") => {
            rec.counters[p].status_delivered += 1;
            rec.record(p, Metric::Status, since);
        }
        Some("read") => {
            rec.counters[p].status_read += 1;
            rec.record(p, Metric::StatusRead, since);
        }
        Some("failed") => {
            let c = &mut rec.counters[p];
            c.status_failed += 1;
            match s["errors"][0]["code"].as_u64() {
                Some(131026) => c.failed_131026 += 1,
                Some(131049) => c.failed_131049 += 1,
                _ => c.failed_limit += 1,
            }
            // Reported failed: no delivery is owed any more.
            c.failed += ctx.ledger.cancel(id) as u64;
        }
        _ => rec.counters[patterns].unexpected_statuses += 1,
    }
}

fn inbound(ctx: &RunContext, business: Option<u32>, m: &Value) {
    let now = ctx.now_us();
    let Some((user, id)) = m["id"].as_str().and_then(parse_inbound_wamid) else {
        ctx.recorders.local().error(ErrorKind::Protocol, || {
            format!("an inbound webhook message without a chatload id: {m}")
        });
        return;
    };
    let Some(business) = business else { return };
    let verdict = ctx
        .ledger
        .receive(id, BUSINESS_BASE + business, |id| ctx.issued_pattern(id));
    let _ = user;
    let mut rec = ctx.recorders.local();
    match verdict {
        Received::First {
            pattern,
            intended_us,
            due_from_us,
            ..
        } => {
            let p = pattern as usize;
            if crate::engine::vu::frames::note_if_late(
                ctx,
                &mut rec,
                (p, intended_us, due_from_us),
                now,
            ) {
                return;
            }
            rec.counters[p].delivered += 1;
            rec.record(p, Metric::Inbound, now.saturating_sub(intended_us));
        }
        Received::Duplicate { pattern } => rec.counters[pattern as usize].duplicates += 1,
        Received::Unexpected => crate::engine::vu::frames::count_stray(ctx, &mut rec, id),
        Received::AfterSettlement => {}
    }
}

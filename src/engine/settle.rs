//! The end of a run's accounting, after the schedule: messages still waiting in senders'
//! queues are not sent (with the reason); deliveries still due to connected recipients are
//! waited for (drain); recipients owed deliveries while offline are brought back, as a
//! returning phone would, where the target's protocol can resume a session (settle); then
//! everything still owed is classified lost, in flight or unverified. Owns when each owed
//! delivery was due; the ledger owns what is owed and the virtual users do the reconnecting.

use super::context::RunContext;
use crate::metrics::{Settlement, Verification};
use crate::protocol::BUSINESS_BASE;
use crate::transport::OfflineDelivery;
use rustc_hash::FxHashSet;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the end phases look at what is still owed.
const POLL: Duration = Duration::from_millis(25);
/// Beyond the connect timeout and the loss deadline, how long returning users may take.
const RETURN_SLACK: Duration = Duration::from_secs(2);

/// Counts the messages still queued for their senders when the schedule ended as not sent,
/// each with its reason (sender never connected, disconnected, or chatload behind).
pub fn count_unsent_orders(ctx: &RunContext) {
    for user in 0..ctx.population.users() {
        let Some(inbox) = ctx.inbox(user) else {
            continue;
        };
        while let Some(order) = inbox.try_take() {
            if order.action.is_message() {
                let reason = ctx.not_sent_reason(order.sender);
                ctx.recorders.local().counters[order.pattern as usize].not_sent_for(reason);
            }
        }
    }
}

/// What is still owed at `now_us`: deliveries to reachable recipients not yet due, and the
/// offline recipients who are owed something.
struct Outstanding {
    not_yet_due: u64,
    offline: FxHashSet<u32>,
}

fn outstanding(ctx: &RunContext, now_us: u64) -> Outstanding {
    let deadline = ctx.scenario.loss_deadline.0;
    let pushed = ctx.connector.offline_delivery() == OfflineDelivery::Pushed;
    let mut o = Outstanding {
        not_yet_due: 0,
        offline: FxHashSet::default(),
    };
    ctx.ledger.visit_outstanding(|recipient, due_from_us| {
        let since = if due_whatever_the_connection(ctx, pushed, recipient, due_from_us) {
            Some(0)
        } else {
            ctx.connected_since(recipient)
        };
        match since {
            Some(since) if due_from_us.max(since) + deadline > now_us => o.not_yet_due += 1,
            Some(_) => {}
            None => {
                o.offline.insert(recipient);
            }
        }
    });
    o
}

/// Waits, at most until `until`, for deliveries to connected recipients that may still
/// arrive in time and for the answers to sends on live connections. Returns false when a
/// stop cut it short.
pub async fn drain(ctx: &RunContext, until: Instant, stop: &CancellationToken) -> bool {
    while Instant::now() < until {
        if ctx.unconfirmed_sends() <= 0 && outstanding(ctx, ctx.now_us()).not_yet_due == 0 {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return false,
        }
    }
    true
}

/// Brings back every user who is owed deliveries while offline, when the target's protocol
/// resumes sessions, and waits until each has had `loss_deadline` on its new connection to
/// receive them (or until nothing owed to them is left). Returns false when a signal cut it
/// short.
pub async fn bring_back_offline(ctx: &RunContext, stop: &CancellationToken) -> bool {
    if ctx.connector.offline_delivery() != OfflineDelivery::Resumed {
        return true;
    }
    let owed = outstanding(ctx, ctx.now_us()).offline;
    if owed.is_empty() {
        return true;
    }
    let returning: Vec<u32> = owed.iter().copied().collect();
    ctx.bring_back(owed);
    let until =
        Instant::now() + ctx.connect_timeout + ctx.scenario.loss_deadline.as_std() + RETURN_SLACK;
    while Instant::now() < until {
        let now = outstanding(ctx, ctx.now_us());
        // Done when every returning user is back and nothing owed to a connected user can
        // still arrive in time; a user who cannot get back keeps the wait to its bound.
        if now.not_yet_due == 0 && returning.iter().all(|u| !now.offline.contains(u)) {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return false,
        }
    }
    true
}

/// Whether a delivery to `recipient` that the target could have from `due_from_us` has its
/// deadline counted from then, whatever the recipient's connection now: the target pushes to
/// offline recipients (`pushed`), the recipient is a business's webhook, or the delivery was
/// already overdue on an earlier connection of the recipient's (`reachability`).
fn due_whatever_the_connection(
    ctx: &RunContext,
    pushed: bool,
    recipient: u32,
    due_from_us: u64,
) -> bool {
    pushed || recipient >= BUSINESS_BASE || ctx.reach.overdue_earlier(recipient, due_from_us)
}

/// Classifies what is still owed at `now_us`. A delivery is due `loss_deadline` after the
/// later of its intended time and the start of the recipient's connection, or, when an
/// earlier connection of the recipient's outlasted that deadline, it was lost on that one
/// (`reachability`); where nothing could show whether the target kept it for an offline
/// recipient (a protocol that cannot resume, or a run cut short before the offline were
/// brought back) it is unverified.
pub fn classify(ctx: &RunContext, now_us: u64, settled: bool) -> Settlement {
    let mode = ctx.connector.offline_delivery();
    ctx.ledger.settle_for_good(
        now_us,
        ctx.scenario.loss_deadline.0,
        |recipient, intended_us, due_from_us| {
            let pushed = mode == OfflineDelivery::Pushed;
            if due_whatever_the_connection(ctx, pushed, recipient, due_from_us) {
                return Verification::DueFrom { since_us: 0 };
            }
            match (ctx.connected_since(recipient), mode) {
                (Some(since_us), OfflineDelivery::Resumed) => Verification::DueFrom { since_us },
                // Connected since before it was sent: it was owed on this connection.
                (Some(since_us), _) if since_us <= intended_us => {
                    Verification::DueFrom { since_us }
                }
                // Brought back to collect it and still without it (or unable to return).
                (None, OfflineDelivery::Resumed) if settled => {
                    Verification::DueFrom { since_us: 0 }
                }
                _ => Verification::Unverified,
            }
        },
    )
}

//! The open-model pacer: walks the schedule in time order and hands each message to its
//! sender's inbox at its intended time, whatever the target is doing. A message whose
//! sender cannot take it (disconnected, inbox full) is counted as not sent, never delayed
//! into the future schedule.

use super::context::RunContext;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::{mpsc::error::TrySendError, watch};

use crate::workload::Schedule;

/// Runs until the schedule ends or `stop` turns true. Returns the number of messages issued.
pub async fn run(
    ctx: Arc<RunContext>,
    mut schedule: Schedule,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut issued = 0u64;
    while let Some(t) = schedule.peek_time() {
        if *stop.borrow() {
            break;
        }
        let now = ctx.now_us();
        if t > now {
            tokio::select! {
                _ = tokio::time::sleep_until(ctx.instant_at(t).into()) => {}
                _ = stop.changed() => break,
            }
        }
        let now = ctx.now_us();
        while let Some(order) = schedule.next_order(now) {
            ctx.issued_seq.store(schedule.issued_seq(), Relaxed);
            issued += 1;
            let Some(inbox) = ctx.inbox_senders.get(order.sender as usize) else {
                continue;
            };
            if let Err(TrySendError::Full(o) | TrySendError::Closed(o)) = inbox.try_send(order) {
                ctx.recorders.local().counters[o.pattern as usize].not_sent += 1;
            }
        }
    }
    issued
}

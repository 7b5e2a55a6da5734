//! The open-model pacer: walks the schedule in time order and hands each message to its
//! sender's inbox (or the business client's) at its intended time, whatever the target is doing. It runs on its own OS
//! thread because a thread's sleep is precise to tens of microseconds where the async timer
//! rounds to whole milliseconds, and that error would show in every latency. A message whose
//! sender cannot take it (inbox full) is counted as not sent, with the reason its
//! connection state gives; every message it issues is counted as scheduled.

use super::context::RunContext;
use crate::metrics::NotSentReason;
use crate::workload::Schedule;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest single sleep, so a stop request is noticed quickly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Runs until the schedule ends or `stop` is cancelled. Returns the number of messages issued.
pub fn run(ctx: Arc<RunContext>, mut schedule: Schedule, stop: CancellationToken) -> u64 {
    let mut issued = 0u64;
    let mut scheduled = vec![0u64; ctx.scenario.patterns.len()];
    while let Some(t) = schedule.peek_time() {
        if stop.is_cancelled() {
            break;
        }
        let now = ctx.now_us();
        if t > now {
            std::thread::sleep(Duration::from_micros(t - now).min(MAX_SLEEP));
            continue;
        }
        while let Some(order) = schedule.next_order(now) {
            ctx.issued_seq.store(schedule.issued_seq(), Relaxed);
            // Every segment walks the whole schedule and sends its own users' share.
            if !ctx.segment.owns(order.owner()) {
                continue;
            }
            issued += 1;
            if order.action.is_message() {
                scheduled[order.pattern as usize] += 1;
            }
            let refused = if order.action.by_business() {
                ctx.send_business_order(order)
                    .err()
                    .map(|o| (o, NotSentReason::Behind))
            } else {
                match ctx.inbox(order.sender) {
                    Some(inbox) => inbox
                        .offer(order)
                        .err()
                        .map(|o| (o, ctx.not_sent_reason(o.sender))),
                    // A sender outside the population: nobody could send it.
                    None => Some((order, NotSentReason::Unsendable)),
                }
            };
            if let Some((o, reason)) = refused.filter(|(o, _)| o.action.is_message()) {
                ctx.recorders.local().counters[o.pattern as usize].not_sent_for(reason);
            }
        }
        // Counted once per batch of due orders: one lock, not one per message.
        if scheduled.iter().any(|n| *n > 0) {
            let mut rec = ctx.recorders.local();
            for (c, n) in rec.counters.iter_mut().zip(scheduled.iter_mut()) {
                c.messages_scheduled += std::mem::take(n);
            }
        }
    }
    issued
}

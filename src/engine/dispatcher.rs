//! The open-model pacer: walks the schedule in time order and hands each message to its
//! sender's inbox (or the business client's) at its intended time, whatever the target is doing. It runs on its own OS
//! thread because a thread's sleep is precise to tens of microseconds where the async timer
//! rounds to whole milliseconds, and that error would show in every latency. A message whose
//! sender cannot take it (disconnected too long, inbox full) is counted as not sent.

use super::context::RunContext;
use crate::workload::Schedule;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

/// Longest single sleep, so a stop request is noticed quickly.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// Runs until the schedule ends or `stop` is set. Returns the number of messages issued.
pub fn run(ctx: Arc<RunContext>, mut schedule: Schedule, stop: Arc<AtomicBool>) -> u64 {
    let mut issued = 0u64;
    while let Some(t) = schedule.peek_time() {
        if stop.load(Relaxed) {
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
            if order.action.by_business() {
                if let Err(o) = ctx.send_business_order(order) {
                    ctx.recorders.local().counters[o.pattern as usize].not_sent += 1;
                }
                continue;
            }
            let Some(inbox) = ctx.inbox(order.sender) else {
                continue;
            };
            if let Err(o) = inbox.offer(order) {
                ctx.recorders.local().counters[o.pattern as usize].not_sent += 1;
            }
        }
    }
    issued
}

//! The open-model pacer: walks the schedule in time order and hands each message to its
//! sender's inbox (or the business client's) at its intended time, whatever the target is
//! doing. It is a task on the runtime sleeping on a [`PreciseTimer`] (see there why neither
//! tokio's timer nor a thread of its own). A message whose sender cannot take it (inbox full)
//! is counted as not sent, with the reason its connection state gives; every message it
//! issues is counted as scheduled.

use super::context::RunContext;
use super::precise_timer::PreciseTimer;
use crate::metrics::NotSentReason;
use crate::workload::Schedule;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Orders handed out in one go before the pacer lets the worker's other tasks run: after a
/// stall thousands may be due at once.
const BATCH: usize = 1024;

/// The schedule and the timer that paces it, made before the run starts so that a timer the
/// system refuses is a setup error rather than a run without pacing.
pub struct Pacer {
    schedule: Schedule,
    timer: PreciseTimer,
}

impl Pacer {
    pub fn new(schedule: Schedule) -> std::io::Result<Pacer> {
        Ok(Pacer {
            schedule,
            timer: PreciseTimer::new()?,
        })
    }
}

/// Runs until the schedule ends or `stop` is cancelled. Returns the number of messages issued.
pub async fn run(ctx: Arc<RunContext>, pacer: Pacer, stop: CancellationToken) -> u64 {
    let Pacer {
        mut schedule,
        timer,
    } = pacer;
    let mut issued = 0u64;
    let mut scheduled = vec![0u64; ctx.scenario.patterns.len()];
    while let Some(t) = schedule.peek_time() {
        if stop.is_cancelled() {
            break;
        }
        let now = ctx.now_us();
        if t > now {
            let wait = Duration::from_micros(t - now);
            tokio::select! {
                _ = stop.cancelled() => break,
                slept = timer.sleep(wait) => if slept.is_err() {
                    // Never seen (arming a timer the process holds cannot fail); the
                    // coarse timer keeps the run going, and a late hand-over shows as a
                    // late send measured from the intended time.
                    tokio::time::sleep(wait).await;
                },
            }
            continue;
        }
        let mut batch = 0;
        while let Some(order) = schedule.next_order(now) {
            batch += 1;
            if batch % BATCH == 0 {
                tokio::task::yield_now().await;
            }
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

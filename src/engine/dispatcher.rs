//! The open-model pacer: walks the schedule in time order and hands each message to its
//! sender's inbox (or the business client's) at its intended time, whatever the target is
//! doing. It is a task on the runtime sleeping on a [`PreciseTimer`] (see there why neither
//! tokio's timer nor a thread of its own). A message whose sender cannot take it (inbox full)
//! is counted as not sent, with the reason its connection state gives; every message it
//! issues is counted as scheduled.

use super::context::RunContext;
use super::precise_timer::PreciseTimer;
use crate::metrics::NotSentReason;
use crate::workload::{Order, Schedule};
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
    /// The shard whose users this pacer serves (one of them also the business client):
    /// each shard walks the whole schedule, so an order never wakes another thread.
    shard: usize,
}

impl Pacer {
    /// `timer` must be made on the runtime (shard) the pacer will run on: it registers with
    /// that runtime's reactor.
    pub fn new(schedule: Schedule, shard: usize) -> std::io::Result<Pacer> {
        Ok(Pacer {
            schedule,
            timer: PreciseTimer::new()?,
            shard,
        })
    }

    pub fn shard(&self) -> usize {
        self.shard
    }
}

/// One pacer per shard with users, each with the whole schedule and its timer made on its
/// shard (the timer registers with that shard's reactor); an error says what could not be made.
pub async fn pacers(ctx: &Arc<RunContext>) -> Result<Vec<Pacer>, String> {
    let mut pacers = Vec::with_capacity(ctx.shards.count());
    for shard in ctx.shards.with_users() {
        let schedule = Schedule::new(
            ctx.scenario.clone(),
            ctx.population.clone(),
            ctx.profile.clone(),
        )
        .map_err(|e| e.to_string())?
        .numbered_from(ctx.id_start.scheduled);
        let timer_error = |e: &dyn std::fmt::Display| format!("cannot make the pacer's timer: {e}");
        let made = ctx
            .shards
            .spawn(shard, async move { Pacer::new(schedule, shard) })
            .await
            .map_err(|e| timer_error(&e))?;
        pacers.push(made.map_err(|e| timer_error(&e))?);
    }
    Ok(pacers)
}

/// Whether `order` is this pacer's to hand out: this process's segment, and on this shard.
fn owns(ctx: &RunContext, shard: usize, order: &Order) -> bool {
    ctx.segment.owns(order.owner())
        && if order.action.by_business() {
            shard == ctx.shards.business()
        } else {
            ctx.shards.of(order.sender) == shard
        }
}

/// How long counting the schedule a cut pacer did not reach may take (a generator far behind
/// an offered load it could never make could otherwise count for hours).
const UNREACHED_BUDGET: Duration = Duration::from_secs(10);

/// What a pacer did not hand out: the rest of its schedule, and the order it had made ahead
/// of its time (its own, not yet due).
pub struct Rest {
    schedule: Schedule,
    pending: Option<Order>,
    shard: usize,
}

/// Runs until the schedule ends or `stop` is cancelled, and gives back what is left of the
/// schedule (see [`count_unreached`]).
pub async fn run(ctx: Arc<RunContext>, pacer: Pacer, stop: CancellationToken) -> Rest {
    let Pacer {
        mut schedule,
        timer,
        shard,
    } = pacer;
    let mut scheduled = vec![0u64; ctx.scenario.patterns.len()];
    // The next order of this pacer's own, made ahead of its time: orders that belong to other
    // shards or segments are passed over as they are made, never slept for.
    let mut pending: Option<Order> = None;
    let mut passed_over = 0usize;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let next = match pending.take() {
            Some(order) => order,
            None => {
                let Some(t) = schedule.peek_time() else {
                    break;
                };
                let Some(order) = schedule.next_order(t) else {
                    continue;
                };
                ctx.issued_seq.fetch_max(schedule.issued_seq(), Relaxed);
                if !owns(&ctx, shard, &order) {
                    passed_over += 1;
                    if passed_over.is_multiple_of(BATCH) {
                        tokio::task::yield_now().await;
                    }
                    continue;
                }
                order
            }
        };
        let now = ctx.now_us();
        if next.intended_us > now {
            let wait = Duration::from_micros(next.intended_us - now);
            pending = Some(next);
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
        hand_out(&ctx, next, &mut scheduled);
        let mut batch = 1;
        loop {
            if batch % BATCH == 0 {
                tokio::task::yield_now().await;
                // Cut while far behind (thousands due at once): what it has not handed out
                // stays in the schedule, to be counted, rather than going out seconds late.
                if stop.is_cancelled() {
                    break;
                }
            }
            let Some(order) = schedule.next_order(now) else {
                break;
            };
            batch += 1;
            ctx.issued_seq.fetch_max(schedule.issued_seq(), Relaxed);
            // Every segment (and shard) walks the whole schedule and sends its own users' share.
            if owns(&ctx, shard, &order) {
                hand_out(&ctx, order, &mut scheduled);
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
    Rest {
        schedule,
        pending,
        shard,
    }
}

/// Gives `order` to its sender's inbox (or the business client); one its sender cannot take
/// is counted as not sent, with the reason.
fn hand_out(ctx: &RunContext, order: Order, scheduled: &mut [u64]) {
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

/// Counts what is left of a schedule the pacer did not get through by the profile's end (far
/// behind a load it could not generate) as scheduled and not sent, chatload behind: they
/// were the scenario's load, and no count would show them otherwise. Spends at most
/// [`UNREACHED_BUDGET`]; where that runs out, the run notes how far the count got.
pub async fn count_unreached(ctx: &RunContext, rest: Rest) {
    let Rest {
        mut schedule,
        pending,
        shard,
    } = rest;
    let started = std::time::Instant::now();
    let mut unreached = vec![0u64; ctx.scenario.patterns.len()];
    if let Some(order) = pending.filter(|o| o.action.is_message()) {
        unreached[order.pattern as usize] += 1;
    }
    let mut batch = 0;
    while let Some(t) = schedule.peek_time() {
        batch += 1;
        if batch % BATCH == 0 {
            if started.elapsed() > UNREACHED_BUDGET {
                // Each shard's pacer counts its own share: the earliest stop is the one said.
                let _ = ctx
                    .schedule_uncounted_from_us
                    .fetch_update(Relaxed, Relaxed, |was| (was == 0 || t < was).then_some(t));
                break;
            }
            tokio::task::yield_now().await;
        }
        let Some(order) = schedule.next_order(t) else {
            continue;
        };
        if owns(ctx, shard, &order) && order.action.is_message() {
            unreached[order.pattern as usize] += 1;
        }
    }
    let mut rec = ctx.recorders.local();
    for (c, n) in rec.counters.iter_mut().zip(unreached) {
        c.messages_scheduled += n;
        c.not_sent += n;
        c.not_sent_behind += n;
    }
}

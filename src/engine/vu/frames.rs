//! What a virtual user does with what its target tells it, whatever the protocol: deliveries
//! are acknowledged, checked against the ledger and measured (and may lead to a read or a
//! reply later); confirmations, refusals, receipts, typing and presence signals are
//! measured; server errors are counted.

use super::VirtualUser;
use crate::engine::context::RunContext;
use crate::metrics::{ErrorKind, Metric, Received};
use crate::protocol::id::pattern_of;
use crate::protocol::{self, BUSINESS_BASE};
use crate::transport::{Delivery, Incoming, Outgoing, Session};
use std::time::Duration;

impl VirtualUser {
    /// Takes what the target said; `waited` is how long it sat on this machine before
    /// chatload read it (see `Session::waited`), which every latency it ends leaves out.
    pub(super) fn on_incoming(&mut self, incoming: Incoming, waited: Option<Duration>) {
        // A borrow, not a clone: every virtual user shares this Arc, and bumping its count on
        // every frame would make one cache line the hottest contended spot of the run.
        let ctx = &self.ctx;
        let read_at = ctx.now_us();
        // When it arrived: a frame that waited while this client served other connections
        // must not charge the target with the client's own queueing.
        let now = match waited {
            Some(w) if !matches!(incoming, Incoming::Nothing) => {
                let w = (w.as_micros() as u64).min(read_at);
                let mut rec = ctx.recorders.local();
                let slot = rec.no_pattern();
                rec.record(slot, Metric::ReadLag, w);
                read_at - w
            }
            _ => read_at,
        };
        let patterns = ctx.scenario.patterns.len();
        match incoming {
            Incoming::Message(d) => self.on_delivery(d, now),
            Incoming::Accepted { id } => {
                if let Some(c) = self.closed.as_mut() {
                    c.answered(id, std::time::Instant::now());
                }
                let Some(at) = self.outbox.iter().position(|(o, _)| o.id == id) else {
                    // A confirmation of nothing outstanding (a stray or a second copy).
                    return;
                };
                let Some((order, sent_us)) = self.outbox.remove(at) else {
                    return;
                };
                ctx.awaiting_acks(self.user, -1);
                let p = (pattern_of(id) as usize).min(patterns);
                let mut rec = ctx.recorders.local();
                rec.record(p, Metric::Send, now.saturating_sub(order.intended_us));
                rec.record(p, Metric::SendService, now.saturating_sub(sent_us));
                rec.counters[p].acked += 1;
            }
            Incoming::Rejected { id, kind, detail } => {
                if let Some(c) = self.closed.as_mut() {
                    c.answered(id, std::time::Instant::now());
                }
                if let Some(at) = self.outbox.iter().position(|(o, _)| o.id == id) {
                    self.outbox.remove(at);
                    ctx.awaiting_acks(self.user, -1);
                }
                let p = (pattern_of(id) as usize).min(patterns);
                // A request that timed out may have been taken: it stays owed, and the
                // ledger says whether it arrived. A refused one is owed nothing.
                let withdrawn = if kind == ErrorKind::RequestTimeout {
                    0
                } else {
                    ctx.ledger.cancel(id) as u64
                };
                let mut rec = ctx.recorders.local();
                rec.error_in(p, kind, || detail);
                if kind != ErrorKind::RequestTimeout {
                    rec.counters[p].withdrawn += withdrawn;
                    rec.counters[p].refused += 1;
                }
            }
            Incoming::Receipt { id, read, t, r } => {
                // A target that kept an earlier run's messages keeps the receipts they
                // earned too, stamped with that run's clock: only this run's count.
                let Some(p) = ctx.issued_pattern(id) else {
                    return;
                };
                let p = p as usize;
                let mut rec = ctx.recorders.local();
                if read {
                    rec.counters[p].read_receipts += 1;
                    if let Some(r) = r.filter(|r| *r > 0) {
                        rec.record(p, Metric::ReadReceipt, now.saturating_sub(r));
                    }
                } else {
                    if let Some(t) = t.filter(|t| *t > 0) {
                        rec.record(p, Metric::Receipt, now.saturating_sub(t));
                    }
                    rec.counters[p].receipts += 1;
                }
            }
            Incoming::Typing { from, r } => {
                let p = match from {
                    Some(f) if protocol::is_business(f) => patterns,
                    _ => ctx.typing_pattern.map_or(patterns, |p| p as usize),
                };
                let mut rec = ctx.recorders.local();
                rec.counters[p].typing_seen += 1;
                if let Some(r) = r.filter(|r| *r > 0) {
                    rec.record(p, Metric::Signal, now.saturating_sub(r));
                }
            }
            Incoming::Presence { r } => {
                let p = ctx
                    .presence
                    .as_ref()
                    .map_or(patterns, |m| m.pattern as usize);
                let mut rec = ctx.recorders.local();
                rec.counters[p].presence_seen += 1;
                if let Some(r) = r.filter(|r| *r > 0) {
                    rec.record(p, Metric::Signal, now.saturating_sub(r));
                }
            }
            Incoming::GoAway { after_ms } => {
                self.goaway = Some(std::time::Duration::from_millis(after_ms));
            }
            Incoming::History { group, r } => {
                let storm = group.and_then(|g| ctx.storm_groups.iter().find(|s| s.group == g));
                let p = storm.map_or(patterns, |s| s.pattern as usize);
                let mut rec = ctx.recorders.local();
                rec.counters[p].history_received += 1;
                if let Some(r) = r.filter(|r| *r > 0) {
                    rec.record(p, Metric::History, now.saturating_sub(r));
                }
            }
            Incoming::ServerError(detail) => ctx
                .recorders
                .local()
                .error(ErrorKind::ServerError, || detail),
            Incoming::Failed { kind, detail } => ctx.recorders.local().error(kind, || detail),
            Incoming::Undecodable(detail) => {
                ctx.recorders.local().error(ErrorKind::Protocol, || detail)
            }
            Incoming::Lost { kind, detail } => self.lost(kind, detail),
            Incoming::Nothing => {}
        }
    }

    fn on_delivery(&mut self, d: Delivery, now: u64) {
        if let Some(seq) = d.seq {
            self.last_seq = self.last_seq.max(seq);
        }
        if let Some(conn) = self.conn.as_mut() {
            conn.push(Outgoing::Delivered(&d));
        }
        let ctx = &self.ctx;
        let Some(pattern) = record_delivery(ctx, self.user, &d, now, self.connected_at_us) else {
            return;
        };
        let p = pattern as usize;
        let id = d.id;
        let last = &mut self
            .last_seen
            .entry((d.group.unwrap_or(u32::MAX), d.from))
            .or_insert([0; 2])[protocol::id::stream(id)];
        if id < *last {
            ctx.recorders.local().counters[p].reordered += 1;
        } else {
            *last = id;
        }
        // Choices about a message key on its number within the run, not on its id: ids
        // begin where the run began (see `id_start`), the choices must not.
        let key = ctx.id_start.key_of(id);
        if let Some(storm) = d
            .group
            .and_then(|g| ctx.storm_groups.iter().find(|s| s.group == g))
        {
            self.reactions
                .decide_open(storm, (ctx.scenario.seed, key), self.user, now);
        }
        if d.group.is_none()
            && let Some(Some(model)) = ctx.reactions.get(p)
        {
            let business = protocol::is_business(d.from).then(|| d.from - BUSINESS_BASE);
            if !self.reactions.decide(
                model,
                (ctx.scenario.seed, key),
                (id, self.user, d.from, d.wamid, pattern),
                now,
                business,
            ) {
                ctx.recorders.local().counters[p].reads_skipped += 1;
            }
        }
    }
}

/// Whether a first delivery of `pattern`'s message meant for `intended_us` and due from
/// `due_us` came past its deadline; if so it is recorded as lost and late (its latency in
/// `delivery_late`, its second in the ledger's loss over time), never as delivered.
pub fn note_if_late(
    ctx: &RunContext,
    rec: &mut crate::metrics::MetricSet,
    (pattern, intended_us, due_us): (usize, u64, u64),
    now: u64,
) -> bool {
    if now <= due_us + ctx.scenario.loss_deadline.0 {
        return false;
    }
    rec.record(
        pattern,
        Metric::DeliveryLate,
        now.saturating_sub(intended_us),
    );
    rec.counters[pattern].delivered_late += 1;
    ctx.ledger.note_late(intended_us);
    true
}

/// Counts a delivery of a message this run never sent to that recipient: an earlier run's
/// (numbered before this run began), or unexpected.
pub fn count_stray(ctx: &RunContext, rec: &mut crate::metrics::MetricSet, id: u64) {
    let slot = rec.no_pattern();
    if ctx.id_start.precedes(id) {
        rec.counters[slot].earlier_run += 1;
    } else {
        rec.counters[slot].unexpected += 1;
    }
}

/// The ledger's verdict on one delivery to `user`, measured: latencies and counts for a
/// first copy (in time, or late: after `loss_deadline` from the later of when the target
/// could have it and `since_us`, when the recipient's connection came up — unless it was
/// overdue on an earlier connection, `reachability`), a duplicate or an id chatload never
/// sent. Returns the pattern of a first copy that came in time.
pub fn record_delivery(
    ctx: &RunContext,
    user: u32,
    d: &Delivery,
    now: u64,
    since_us: u64,
) -> Option<u16> {
    let verdict = ctx.ledger.receive(d.id, user, |id| ctx.issued_pattern(id));
    let mut rec = ctx.recorders.local();
    match verdict {
        Received::First {
            pattern,
            last_of_message,
            intended_us,
            due_from_us,
        } => {
            let p = pattern as usize;
            // The ledger knows when the message was meant to go, whatever the protocol
            // carries; the actual send time only comes with the frame.
            let t = intended_us;
            let counts_from = ctx.reach.counts_from(user, due_from_us, since_us);
            if note_if_late(ctx, &mut rec, (p, t, counts_from), now) {
                return None;
            }
            if ctx.profile.eligible(user, t) {
                rec.record(p, Metric::Delivery, now.saturating_sub(t));
                if let Some(s) = d.s.filter(|s| *s > 0) {
                    rec.record(p, Metric::DeliveryService, now.saturating_sub(s));
                }
                if last_of_message && d.group.is_some() {
                    rec.record(p, Metric::Fanout, now.saturating_sub(t));
                }
            } else {
                rec.record(p, Metric::DeliveryOffline, now.saturating_sub(t));
            }
            rec.counters[p].delivered += 1;
            Some(pattern)
        }
        Received::Duplicate { pattern } => {
            rec.counters[pattern as usize].duplicates += 1;
            None
        }
        Received::Unexpected => {
            count_stray(ctx, &mut rec, d.id);
            None
        }
        Received::AfterSettlement => None,
    }
}

//! One virtual consumer: holds its WebSocket, sends its scheduled messages and signals when
//! the dispatcher hands them over, receives deliveries and acknowledges them (`frames`),
//! reads and replies later (`reactions`, sent when due by `timers` with the heartbeats),
//! announces its presence, reconnects with backoff, and records everything it sees. Runs
//! until the run stops it; goose launches it and closes it.

mod closed_loop;
pub(super) mod frames;
pub mod reactions;
mod timers;

use super::context::RunContext;
use super::reconnect::{AfterFailure, Reconnector};
use crate::metrics::{ErrorKind, LATE_SEND_US, Ledger, Metric, NotSentReason, Owed};
use crate::protocol::{self, BUSINESS_BASE, Media, Recipient};
use crate::transport::{AnySession, Incoming, Outgoing, Session};
use crate::workload::Order;
use crate::workload::profile::NextChange;
use crate::workload::schedule::Action;
use reactions::Reactions;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How long a user leaving on the profile's schedule waits for the confirmations of its last
/// sends before it closes.
const LEAVE_CONFIRM_WAIT: Duration = Duration::from_millis(500);

pub struct VirtualUser {
    user: u32,
    ctx: Arc<RunContext>,
    conn: Option<AnySession>,
    last_seq: u64,
    /// Per (conversation, sender): the latest message id seen in each id stream, to spot
    /// reordering (ids increase within a stream, not across the two).
    last_seen: FxHashMap<(u32, u32), [u64; 2]>,
    reconnect: Reconnector,
    /// Messages written but not yet confirmed, with when they were written; written again
    /// after a reconnect, as a messaging client's outbox does (the server drops the copies
    /// it already has). Kept only for protocols that confirm sends.
    outbox: VecDeque<(Order, u64)>,
    /// The groups this user belongs to, for protocols that subscribe or join per group.
    groups: Option<Vec<u32>>,
    reactions: Reactions,
    next_heartbeat: Option<Instant>,
    /// The server asked us to leave and come back after this long (`goaway`).
    goaway: Option<Duration>,
    /// The closed model's loop, when the scenario has one.
    closed: Option<closed_loop::ClosedLoop>,
    /// When the current connection came up (µs on the run's clock): deliveries owed from
    /// before are due from then.
    connected_at_us: u64,
    /// The profile's next connect or disconnect for this user, asked on every event.
    next_change: NextChange,
}

impl VirtualUser {
    /// The user's index in the population.
    pub fn index(&self) -> u32 {
        self.user
    }

    pub fn new(user: u32, ctx: Arc<RunContext>) -> Option<Self> {
        ctx.inbox(user)?;
        let closed = closed_loop::ClosedLoop::for_user(&ctx, user);
        Some(VirtualUser {
            user,
            ctx,
            conn: None,
            last_seq: 0,
            last_seen: FxHashMap::default(),
            reconnect: Reconnector::new(user),
            outbox: VecDeque::new(),
            groups: None,
            reactions: Reactions::default(),
            next_heartbeat: None,
            goaway: None,
            closed,
            connected_at_us: 0,
            next_change: NextChange::default(),
        })
    }

    /// Runs the user until the run stops it (`RunContext::users_stop`): connects and leaves
    /// on the profile's schedule, sends what the dispatcher hands over, answers what arrives.
    /// Sleeps until the next thing due; an idle user is never woken for nothing.
    pub async fn drive(&mut self) {
        let stop = self.ctx.users_stop.clone();
        loop {
            // The flag, not the token: `is_cancelled` takes the token's lock, shared by all.
            if self.ctx.finished.load(Relaxed) {
                Box::pin(self.disconnect()).await;
                self.count_unacknowledged();
                return;
            }
            let now = Instant::now();
            let now_us = self.ctx.now_us();
            // Online on the profile's schedule, and at the end while the settle phase brings
            // back users who are owed deliveries.
            let want_online = !self.ctx.finished.load(Relaxed)
                && (self.ctx.profile.online(self.user, now_us) || self.ctx.is_returning(self.user));
            // Wake for this user's next scheduled connect or disconnect, or its next storm.
            let change = self
                .next_change
                .at(&self.ctx.profile, self.user, now_us)
                .map(|t| self.ctx.instant_at(t));
            let storm = self
                .reconnect
                .next_storm_at(&self.ctx.storms)
                .map(|t| self.ctx.instant_at(t));
            let mut wake = Wake(None).min(change).min(storm);
            if self.conn.is_some() {
                wake = wake.min(self.reactions.next_due().map(|t| self.ctx.instant_at(t)));
                wake = wake.min(self.next_heartbeat);
                if let Some(c) = self.closed.as_mut()
                    && want_online
                    && let Some(order) = c.take_due(&self.ctx, self.user, now)
                {
                    let id = order.id;
                    // The loop makes its own schedule, one message at a time.
                    self.ctx.recorders.local().counters[order.pattern as usize]
                        .messages_scheduled += 1;
                    if !self.send(order)
                        && let Some(c) = self.closed.as_mut()
                    {
                        // Nothing went out: nothing will answer, so the loop goes on.
                        c.answered(id, now);
                    }
                    continue;
                }
                wake = wake.min(self.closed.as_ref().and_then(|c| c.due_at()));
            }
            if let Some(pattern) = self.reconnect.strike(
                &self.ctx.storms,
                self.ctx.scenario.seed,
                self.user,
                now_us,
                self.conn.is_some(),
                now,
            ) {
                // Cut without a close handshake, as a network failure would.
                self.conn = None;
                self.went_offline();
                self.ctx.recorders.local().counters[pattern as usize].dropped_connections += 1;
                continue;
            }
            if let Some(after) = self.goaway.take() {
                Box::pin(self.leave_on_request(after, now_us)).await;
                continue;
            }
            if self.conn.is_none() {
                let want_online = want_online && !self.reconnect.gave_up();
                if want_online && now >= self.reconnect.next_attempt() {
                    // Boxed while it runs: a WebSocket/TLS/MQTT connect future is ~10 KB,
                    // and inline it would make every user's drive future that big for the
                    // whole run (heaptrack: 10.7 KB per idle user).
                    Box::pin(self.connect()).await;
                } else {
                    let wake = if want_online {
                        wake.min(Some(self.reconnect.next_attempt()))
                    } else {
                        wake
                    };
                    // Offline: also woken when the settle phase starts bringing users back.
                    let settling = &self.ctx.returning_set;
                    tokio::select! {
                        _ = wake.sleep() => {}
                        _ = stop.cancelled() => {}
                        _ = settling.cancelled(), if !settling.is_cancelled() => {}
                    }
                }
                continue;
            }
            if !want_online {
                Box::pin(self.await_confirmations()).await;
                Box::pin(self.disconnect()).await;
                continue;
            }
            self.step(wake).await;
        }
    }

    /// Waits on a live connection and handles what happens — frames, orders — until `wake`
    /// comes or something the caller decides on has changed. One timer and one inbox wait
    /// serve every frame of the stretch: the caller's clock reads and profile checks, and a
    /// fresh timer and inbox registration, on every frame cost about a microsecond per
    /// message at 10,000 msg/s (docs/performance.md, "Where one thread is enough").
    /// The run's stop arrives through the inbox (`Inbox::stop`): no shared lock per wait.
    async fn step(&mut self, wake: Wake) {
        // One count per stretch, not per frame, on the Arc every user shares.
        let ctx = Arc::clone(&self.ctx);
        let Some(inbox) = ctx.inbox(self.user) else {
            return;
        };
        enum Happened {
            Said(Incoming, Option<std::time::Duration>),
            Order(Order),
            Tick,
        }
        let sleep = wake.sleep();
        let take = inbox.take();
        tokio::pin!(sleep, take);
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            // The deadline first: a connection that always has a frame ready must not keep a
            // scheduled leave, a storm or a heartbeat from coming.
            let happened = tokio::select! {
                biased;
                _ = &mut sleep => Happened::Tick,
                i = conn.next() => Happened::Said(i, conn.waited()),
                o = &mut take => match o {
                    Some(o) => Happened::Order(o),
                    None => return,
                },
            };
            match happened {
                Happened::Said(Incoming::Lost { kind, detail }, _) => {
                    return self.lost(kind, detail);
                }
                Happened::Said(i, waited) => {
                    self.on_incoming(i, waited);
                    // What the caller decides on: a goaway to carry out, an answer a closed
                    // loop waits for, a reaction due before `wake`.
                    let reaction_sooner = self
                        .reactions
                        .next_due()
                        .is_some_and(|t| wake.0.is_none_or(|w| ctx.instant_at(t) < w));
                    if self.goaway.is_some() || self.closed.is_some() || reaction_sooner {
                        return;
                    }
                }
                Happened::Tick => return self.on_timers(),
                Happened::Order(order) => {
                    self.send(order);
                    // Take whatever else is already due without another wake-up.
                    for _ in 0..63 {
                        match inbox.try_take() {
                            Some(o) => {
                                self.send(o);
                            }
                            None => break,
                        }
                    }
                    take.set(inbox.take());
                }
            }
        }
    }

    async fn connect(&mut self) {
        let started = Instant::now();
        if self.groups.is_none() {
            self.groups = Some(if self.ctx.connector.native_url().is_some() {
                Vec::new()
            } else {
                self.ctx.population.groups_of(self.user)
            });
        }
        let groups = self.groups.as_deref().unwrap_or(&[]);
        match self
            .ctx
            .connector
            .connect(self.user, self.last_seq, groups, self.ctx.connect_timeout)
            .await
        {
            Ok(mut conn) => {
                {
                    let mut rec = self.ctx.recorders.local();
                    let slot = rec.no_pattern();
                    rec.record(slot, Metric::Connect, started.elapsed().as_micros() as u64);
                }
                if let Some((pattern, took)) = self.reconnect.connected(Instant::now()) {
                    let mut rec = self.ctx.recorders.local();
                    rec.record(pattern as usize, Metric::Reconnect, took.as_micros() as u64);
                    rec.counters[pattern as usize].reconnects += 1;
                }
                let now_us = self.ctx.now_us();
                self.ctx.awaiting_acks(self.user, self.outbox.len() as i64);
                if !self.outbox.is_empty() {
                    let mut rec = self.ctx.recorders.local();
                    for (o, sent_us) in self.outbox.iter_mut() {
                        *sent_us = now_us;
                        conn.push(message(o, now_us));
                        rec.counters[o.pattern as usize].retransmitted += 1;
                    }
                }
                self.conn = Some(conn);
                self.ctx.set_connected(self.user, true);
                self.connected_at_us = self.ctx.connected_since(self.user).unwrap_or(now_us);
                if let Some(c) = self.closed.as_mut() {
                    c.connected(Instant::now());
                }
                self.announce("online");
                self.next_heartbeat = self
                    .ctx
                    .presence
                    .as_ref()
                    .map(|p| Instant::now() + p.heartbeat);
            }
            Err(e) => {
                self.ctx
                    .recorders
                    .local()
                    .error(e.kind, || e.detail.clone());
                if let AfterFailure::GiveUp(pattern) = self.reconnect.failed(Instant::now()) {
                    self.ctx.recorders.local().counters[pattern as usize].gave_up += 1;
                }
            }
        }
    }

    /// Leaves on schedule: writes what is queued, closes, and marks the user offline.
    pub async fn disconnect(&mut self) {
        self.announce("offline");
        if let Some(mut conn) = self.conn.take() {
            self.went_offline();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.close()).await;
        }
    }

    /// The server sent `goaway`: close gracefully and come back under the storm's policy.
    async fn leave_on_request(&mut self, after: Duration, now_us: u64) {
        if let Some(mut conn) = self.conn.take() {
            self.went_offline();
            let _ = tokio::time::timeout(Duration::from_millis(200), conn.close()).await;
        }
        let now = Instant::now();
        match super::reconnect::Reconnector::goaway_storm(&self.ctx.storms, now_us) {
            Some(storm) => {
                self.ctx.recorders.local().counters[storm.pattern as usize].dropped_connections +=
                    1;
                self.reconnect.dropped(&storm, now, after);
            }
            None => self.reconnect.lost(now),
        }
    }

    /// The connection broke: count it and come back after a backoff.
    fn lost(&mut self, kind: ErrorKind, detail: String) {
        self.conn = None;
        self.went_offline();
        self.ctx.recorders.local().error(kind, || detail);
        self.reconnect.lost(Instant::now());
    }

    /// Sends one order; false when it could not be said (no connection, or the protocol
    /// has no way to say it).
    fn send(&mut self, order: Order) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            if order.action.is_message() {
                let reason = self.ctx.not_sent_reason(self.user);
                self.ctx.recorders.local().counters[order.pattern as usize].not_sent_for(reason);
            }
            return false;
        };
        let ctx = &self.ctx;
        let now = ctx.now_us();
        let p = order.pattern as usize;
        if let (Action::Typing, Recipient::User(to)) = (order.action, order.to) {
            let said = conn.push(Outgoing::Typing {
                from: order.sender,
                to,
                r: order.intended_us,
            });
            if said {
                ctx.recorders.local().counters[p].typing_sent += 1;
            }
            return said;
        }
        if let Action::Typing = order.action {
            return false;
        }
        let owed = match order.to {
            Recipient::User(u) => Some(Owed::One(u)),
            Recipient::Business(b) => Some(Owed::One(BUSINESS_BASE + b)),
            Recipient::Group(g) => ctx.population.group(g).map(|m| {
                if ctx.connector.groups_keep_for_offline() {
                    Ledger::group_owed(m, order.sender)
                } else {
                    Ledger::group_owed_to(m, order.sender, |u| ctx.connected_since(u).is_some())
                }
            }),
        };
        let Some(owed) = owed else {
            // A group this population does not have: nothing can say it.
            ctx.recorders.local().counters[p].not_sent_for(NotSentReason::Unsendable);
            return false;
        };
        // A plain request/response API delivers to no one: nothing is owed, nothing tracked.
        let owed_count = if ctx.connector.delivers() {
            let opened = ctx.ledger.open(
                order.id,
                order.pattern,
                order.sender,
                order.intended_us,
                owed,
            );
            // The run was settled while this order was on its way to the user (a stop):
            // not sent, like the orders still waiting in the inboxes then.
            let Some(owed_count) = opened else {
                let reason = ctx.not_sent_reason(order.sender);
                ctx.recorders.local().counters[p].not_sent_for(reason);
                return false;
            };
            owed_count
        } else {
            0
        };
        if !conn.push(message(&order, now)) {
            let withdrawn = ctx.ledger.cancel(order.id) as u64;
            let mut rec = ctx.recorders.local();
            rec.counters[p].withdrawn += withdrawn;
            rec.counters[p].not_sent_for(NotSentReason::Unsendable);
            rec.error_in(p, ErrorKind::Protocol, || {
                format!(
                    "the target's protocol has no way to send this message (to {:?})",
                    order.to
                )
            });
            return false;
        }
        if conn.confirms_sends() {
            self.outbox.push_back((order, now));
            ctx.awaiting_acks(self.user, 1);
        }
        let media = media_of(&order);
        let lag = now.saturating_sub(order.intended_us);
        let mut rec = ctx.recorders.local();
        rec.record(p, Metric::SendLag, lag);
        let c = &mut rec.counters[p];
        c.messages_sent += 1;
        c.deliveries_owed += owed_count as u64;
        c.media_bytes += media.bytes as u64;
        if lag > LATE_SEND_US {
            c.late_sends += 1;
        }
        true
    }

    /// Before leaving on schedule: a send written just before is confirmed a round trip
    /// later, and closing without reading it would leave a send the target answered
    /// unconfirmed (written again on the next connection, or counted `unacknowledged` at the
    /// end). Waits at most [`LEAVE_CONFIRM_WAIT`], taking whatever else arrives meanwhile.
    async fn await_confirmations(&mut self) {
        let until = tokio::time::Instant::now() + LEAVE_CONFIRM_WAIT;
        while !self.outbox.is_empty() {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let (incoming, waited) = tokio::select! {
                i = conn.next() => (i, conn.waited()),
                _ = tokio::time::sleep_until(until) => return,
            };
            match incoming {
                Incoming::Lost { kind, detail } => return self.lost(kind, detail),
                i => self.on_incoming(i, waited),
            }
        }
    }

    /// At the run's end: the sends still waiting for the target's confirmation never had it
    /// (the drain waited for those on live connections), so their send latency is unknown.
    fn count_unacknowledged(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let mut rec = self.ctx.recorders.local();
        for (order, _) in self.outbox.drain(..) {
            rec.counters[order.pattern as usize].unacknowledged += 1;
        }
    }

    /// The connection is gone: the user is offline, and its unconfirmed sends wait for the
    /// next connection rather than for an answer on this one.
    fn went_offline(&mut self) {
        self.ctx.set_connected(self.user, false);
        self.ctx
            .awaiting_acks(self.user, -(self.outbox.len() as i64));
    }

    /// Presence updates to this user's contacts, when a presence pattern asks for them.
    fn announce(&mut self, state: &str) {
        let (Some(model), Some(conn)) = (self.ctx.presence.as_ref(), self.conn.as_mut()) else {
            return;
        };
        if !model.updates {
            return;
        }
        let contacts = self.ctx.population.contacts(self.user);
        let now = self.ctx.now_us();
        let said = conn.push(Outgoing::Presence {
            from: self.user,
            state,
            s: now,
            contacts,
        });
        if said {
            self.ctx.recorders.local().counters[model.pattern as usize].presence_sent += 1;
        }
    }

    /// Ends the user: closes its connection. Its inbox stays with the run for a later
    /// start of the same person.
    pub async fn finish(mut self) {
        self.disconnect().await;
    }
}

/// The earliest of the times a user must wake at, if any: with none, it waits only for
/// its connection, its inbox or the run's stop.
#[derive(Clone, Copy)]
struct Wake(Option<Instant>);

impl Wake {
    fn min(self, other: Option<Instant>) -> Wake {
        match (self.0, other) {
            (Some(a), Some(b)) => Wake(Some(a.min(b))),
            (a, b) => Wake(a.or(b)),
        }
    }

    async fn sleep(self) {
        match self.0 {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    }
}

fn media_of(order: &Order) -> Media {
    match order.action {
        Action::Message { media, media_bytes } => Media {
            kind: media,
            bytes: media_bytes,
        },
        _ => Media::default(),
    }
}

/// The outgoing message for an order, written at `now_us`.
fn message(order: &Order, now_us: u64) -> Outgoing<'static> {
    Outgoing::Message {
        id: order.id,
        from: order.sender,
        to: order.to,
        t: order.intended_us,
        s: now_us,
        body: protocol::filler_body(order.size as usize),
        media: media_of(order),
    }
}

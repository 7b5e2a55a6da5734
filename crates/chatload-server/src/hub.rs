//! The reference server's shared state: users (sequence numbers, unacknowledged deliveries
//! that double as the offline queue, the live connection) and groups, in shards so that no
//! lock is global. Owns routing and the fault knobs; the socket loop is in `connection`.

use super::business::BusinessHub;
use super::business::webhook::WebhookEvent;
use super::knobs::{Knobs, Latency};
pub use super::stats::HubStats;
pub use crate::protocol::ServerCounters;
use crate::protocol::keyed;
use crate::protocol::{self, Delivery};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite::Utf8Bytes;

const SHARDS: usize = 64;

/// A frame for one connection, due at a given time (the delay knob).
#[derive(Debug)]
pub struct Outbound {
    pub due: Instant,
    pub text: Utf8Bytes,
    /// Reorder fault: write this delivery after the next delivery.
    pub hold_back: bool,
    /// A `msg` frame (as opposed to an ack, receipt or error).
    pub delivery: bool,
    /// Stall fault: after this frame, write nothing more for this long.
    pub stall: Option<std::time::Duration>,
    /// Reset fault: cut the connection instead of writing this frame.
    pub reset: bool,
    /// After this frame, close the connection gracefully (a `goaway` drain).
    pub close: bool,
}

impl Outbound {
    pub fn control(text: Utf8Bytes) -> Self {
        Outbound {
            due: Instant::now(),
            text,
            hold_back: false,
            delivery: false,
            stall: None,
            reset: false,
            close: false,
        }
    }
}

/// Messages of a group kept for history fetches (their body sizes).
const HISTORY: usize = 50;

struct GroupEntry {
    members: Arc<[u32]>,
    history: VecDeque<u32>,
}

type GroupShard = FxHashMap<u32, GroupEntry>;

#[derive(Clone)]
pub struct ConnHandle {
    pub conn_id: u64,
    pub tx: super::outbox::OutboxSender,
}

#[derive(Default)]
struct UserEntry {
    /// The highest message id this user has sent, per id stream (see
    /// `protocol::id::stream`); ids increase per sender within a stream, so a send at or below
    /// it is a retransmission after a reconnect and is acknowledged, not delivered again.
    last_sent_id: [u64; 2],
    /// For sends over HTTP, which may arrive out of order (a client sends on several
    /// connections at once): the ids taken most recently, at most `RECENT_HTTP_IDS`. Only
    /// users who send over HTTP have it; boxed so every other user's entry grows by 8
    /// bytes, not 32.
    #[allow(clippy::box_collection)]
    recent_http_ids: Option<Box<VecDeque<u64>>>,
    /// The run (`protocol::hello`) of the user's last hello: ids start afresh in a new run.
    run: u64,
    next_seq: u64,
    /// Deliveries not yet acknowledged: sequence, the sender's run (0: not from a run's
    /// session, e.g. a business send) and the frame.
    unacked: VecDeque<(u64, u64, Utf8Bytes)>,
    conn: Option<ConnHandle>,
}

/// How many of an HTTP sender's latest ids the hub keeps to tell a retransmission from a
/// request that overtook another (2 KiB per HTTP sender).
const RECENT_HTTP_IDS: usize = 256;

pub struct Hub {
    delay_line: Option<super::delay_line::DelayLine>,
    /// `max_rate`: when the next message may be taken, in ns after `started`.
    next_slot_ns: AtomicU64,
    slot_ns: u64,
    started: Instant,
    users: Box<[Mutex<FxHashMap<u32, UserEntry>>]>,
    groups: Box<[Mutex<GroupShard>]>,
    knobs: Knobs,
    limits: super::Limits,
    /// Bytes of deliveries kept in all users' queues (against `limits.queue_bytes`).
    queued_bytes: AtomicU64,
    latency: Option<Latency>,
    delivery_counter: AtomicU64,
    /// Sends seen, counted only for the missing-acknowledgement fault.
    send_counter: AtomicU64,
    next_conn_id: AtomicU64,
    pub stats: HubStats,
    pub business: BusinessHub,
}

/// Bytes of the deliveries in one user's queue.
fn queue_bytes(q: &VecDeque<(u64, u64, Utf8Bytes)>) -> u64 {
    q.iter().map(|(_, _, t)| t.len() as u64).sum()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave it half-written in a way that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    pub fn new(
        knobs: Knobs,
        limits: super::Limits,
        webhooks: UnboundedSender<WebhookEvent>,
    ) -> Self {
        let latency = knobs.latency.clone();
        // Deliveries wait on the delay line whenever they may leave out of arrival order.
        let delay_line = if !knobs.delay.is_zero()
            || !knobs.ack_delay.is_zero()
            || latency.is_some()
            || knobs.max_rate > 0.0
            || knobs.hold_every > 0
        {
            super::delay_line::DelayLine::start().ok()
        } else {
            None
        };
        Hub {
            delay_line,
            next_slot_ns: AtomicU64::new(0),
            slot_ns: if knobs.max_rate > 0.0 {
                (1e9 / knobs.max_rate).max(1.0) as u64
            } else {
                0
            },
            started: Instant::now(),
            users: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            groups: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            business: BusinessHub::new(knobs.api, webhooks),
            knobs,
            limits,
            queued_bytes: AtomicU64::new(0),
            latency,
            delivery_counter: AtomicU64::new(0),
            send_counter: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(1),
            stats: HubStats::default(),
        }
    }

    pub fn knobs(&self) -> &Knobs {
        &self.knobs
    }

    fn shard(&self, user: u32) -> &Mutex<FxHashMap<u32, UserEntry>> {
        &self.users[user as usize % SHARDS]
    }

    pub fn new_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Relaxed)
    }

    /// Registers a connection for `user` in run `run` and returns the deliveries it missed
    /// after `last_seq`. A new run starts the user afresh: its ids may repeat an earlier
    /// run's, and what an earlier run left unacknowledged is not this run's to receive.
    pub fn attach(&self, user: u32, last_seq: u64, run: u64, handle: ConnHandle) -> Vec<Utf8Bytes> {
        let mut shard = lock(self.shard(user));
        let entry = shard.entry(user).or_default();
        let kept_before = queue_bytes(&entry.unacked);
        if entry.run != run {
            entry.run = run;
            entry.last_sent_id = [0; 2];
            entry.recent_http_ids = None;
            entry
                .unacked
                .retain(|(_, from_run, _)| *from_run == run || *from_run == 0);
        }
        while entry
            .unacked
            .front()
            .is_some_and(|(seq, _, _)| *seq <= last_seq)
        {
            entry.unacked.pop_front();
        }
        if self.knobs.discard_offline {
            // A server without offline queues forgets what the last connection left unacked.
            self.stats
                .discarded
                .fetch_add(entry.unacked.len() as u64, Relaxed);
            entry.unacked.clear();
        }
        self.queued_bytes
            .fetch_sub(kept_before - queue_bytes(&entry.unacked), Relaxed);
        // One connection per user: a second log-in replaces the first, which is told why and
        // closed (counted), so two clients on one user id show up instead of silently
        // splitting its deliveries.
        if let Some(old) = entry.conn.take()
            && old.conn_id != handle.conn_id
        {
            self.stats.replaced.fetch_add(1, Relaxed);
            let mut bye = Outbound::control(
                protocol::error(
                    409,
                    &format!("another connection logged in as user {user}; this one is closed"),
                )
                .into(),
            );
            bye.close = true;
            let _ = old.tx.send(bye);
        }
        entry.conn = Some(handle);
        entry
            .unacked
            .iter()
            .map(|(_, _, text)| text.clone())
            .collect()
    }

    /// The run of `user`'s last hello (0 if it never said hello).
    pub fn run_of(&self, user: u32) -> u64 {
        lock(self.shard(user)).get(&user).map_or(0, |e| e.run)
    }

    /// Forgets the connection if it is still the user's current one.
    pub fn detach(&self, user: u32, conn_id: u64) {
        let mut shard = lock(self.shard(user));
        if let Some(entry) = shard.get_mut(&user)
            && entry.conn.as_ref().is_some_and(|c| c.conn_id == conn_id)
        {
            entry.conn = None;
        }
    }

    /// The client confirmed delivery `seq`: it no longer needs to be kept.
    pub fn acknowledge(&self, user: u32, seq: u64) {
        let mut shard = lock(self.shard(user));
        if let Some(entry) = shard.get_mut(&user) {
            let gone = if entry.unacked.front().is_some_and(|(s, _, _)| *s == seq) {
                entry.unacked.pop_front()
            } else if let Some(i) = entry.unacked.iter().position(|(s, _, _)| *s == seq) {
                entry.unacked.remove(i)
            } else {
                None
            };
            if let Some((_, _, text)) = gone {
                self.queued_bytes.fetch_sub(text.len() as u64, Relaxed);
            }
        }
    }

    /// Whether a send gets its confirmation: every one does unless the missing-acknowledgement
    /// fault (`drop_ack_every`) withholds this one.
    pub fn confirms_send(&self) -> bool {
        let every = self.knobs.drop_ack_every;
        // Counted only with the fault on: every send would otherwise touch one shared line.
        let withheld =
            every > 0 && (self.send_counter.fetch_add(1, Relaxed) + 1).is_multiple_of(every);
        if withheld {
            self.stats.acks_dropped.fetch_add(1, Relaxed);
        }
        !withheld
    }

    /// Records that `from` sent `id`; false when it is a retransmission of one already taken.
    pub fn accept_send(&self, from: u32, id: u64) -> bool {
        let mut shard = lock(self.shard(from));
        let entry = shard.entry(from).or_default();
        let stream = protocol::id::stream(id);
        if id <= entry.last_sent_id[stream] {
            self.stats.retransmitted.fetch_add(1, Relaxed);
            return false;
        }
        entry.last_sent_id[stream] = id;
        true
    }

    /// As [`Hub::accept_send`], for a send over HTTP: requests from one user may overtake
    /// each other, so an id below the highest taken is new unless it is one of the last
    /// `RECENT_HTTP_IDS` taken (or older than all of them: too old to tell, counted as a
    /// retransmission).
    pub fn accept_unordered_send(&self, from: u32, id: u64) -> bool {
        let mut shard = lock(self.shard(from));
        let entry = shard.entry(from).or_default();
        let recent = entry.recent_http_ids.get_or_insert_with(Default::default);
        let too_old = recent.len() == RECENT_HTTP_IDS && recent.iter().all(|&r| id < r);
        if too_old || recent.contains(&id) {
            self.stats.retransmitted.fetch_add(1, Relaxed);
            return false;
        }
        if recent.len() == RECENT_HTTP_IDS {
            recent.pop_front();
        }
        recent.push_back(id);
        let stream = protocol::id::stream(id);
        entry.last_sent_id[stream] = entry.last_sent_id[stream].max(id);
        true
    }

    /// Defines (or redefines) `group`; false, counted, when it has more members than the
    /// server takes.
    pub fn define_group(&self, group: u32, members: Vec<u32>) -> bool {
        if members.len() > self.limits.max_group_size {
            self.stats.groups_refused.fetch_add(1, Relaxed);
            return false;
        }
        lock(&self.groups[group as usize % SHARDS]).insert(
            group,
            GroupEntry {
                members: members.into(),
                history: VecDeque::new(),
            },
        );
        true
    }

    pub fn limits(&self) -> super::Limits {
        self.limits
    }

    /// The members of `group`, recording a message of `body_len` bytes into its history.
    pub fn group_send(&self, group: u32, body_len: usize) -> Option<Arc<[u32]>> {
        let mut shard = lock(&self.groups[group as usize % SHARDS]);
        let entry = shard.get_mut(&group)?;
        if entry.history.len() >= HISTORY {
            entry.history.pop_front();
        }
        entry.history.push_back(body_len as u32);
        Some(entry.members.clone())
    }

    /// The recent history of `group`: how many messages, how many bytes.
    pub fn group_history(&self, group: u32) -> Option<(usize, usize)> {
        let shard = lock(&self.groups[group as usize % SHARDS]);
        let h = &shard.get(&group)?.history;
        Some((h.len(), h.iter().map(|b| *b as usize).sum()))
    }

    /// Sends a receipt (or any control frame) to a user if connected; dropped otherwise.
    pub fn notify(&self, user: u32, text: Utf8Bytes) {
        if self.send_control(user, text) {
            self.stats.signals.fetch_add(1, Relaxed);
        }
    }

    /// Hands `text` to connection `conn` `after` from now, on the delay line (one thread for
    /// every such frame, not a task each); false without a delay line.
    pub fn write_later(
        &self,
        conn: &super::outbox::OutboxSender,
        text: Utf8Bytes,
        after: std::time::Duration,
    ) -> bool {
        let Some(line) = &self.delay_line else {
            return false;
        };
        let mut out = Outbound::control(text);
        out.due += after;
        line.push(conn.clone(), out);
        true
    }

    /// Writes a control frame to `user`'s connection of now; false if it has none.
    pub fn send_control(&self, user: u32, text: Utf8Bytes) -> bool {
        let conn = lock(self.shard(user))
            .get(&user)
            .and_then(|e| e.conn.clone());
        conn.is_some_and(|c| c.tx.send(Outbound::control(text)).is_ok())
    }

    /// A graceful reconnect storm: every connected user that storm `pattern` hits gets a
    /// `goaway` asking it back after `after_ms`, and its connection is closed. Returns how
    /// many were asked to leave.
    pub fn goaway(&self, seed: u64, pattern: u16, fraction: f64, after_ms: u64) -> u64 {
        let text: Utf8Bytes = protocol::goaway(after_ms).into();
        let mut sent = 0;
        for shard in self.users.iter() {
            let shard = lock(shard);
            for (user, entry) in shard.iter() {
                let Some(c) = &entry.conn else { continue };
                if !keyed::storm_hits(seed, pattern, *user, fraction) {
                    continue;
                }
                let mut out = Outbound::control(text.clone());
                out.close = true;
                if c.tx.send(out).is_ok() {
                    sent += 1;
                }
            }
        }
        self.stats.goaways.fetch_add(sent, Relaxed);
        sent
    }

    /// Under `max_rate`, when a message taken at `at` gets its turn: one slot of 1/max_rate
    /// each, in arrival order, so that past the rate a queue builds and latency grows.
    fn admit(&self, at: Instant) -> Instant {
        if self.slot_ns == 0 {
            return at;
        }
        let now_ns = at.saturating_duration_since(self.started).as_nanos() as u64;
        let mut cur = self.next_slot_ns.load(Relaxed);
        loop {
            let slot = cur.max(now_ns);
            match self.next_slot_ns.compare_exchange_weak(
                cur,
                slot + self.slot_ns,
                Relaxed,
                Relaxed,
            ) {
                Ok(_) => return at + std::time::Duration::from_nanos(slot - now_ns),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Whether `user` has a live connection now.
    pub fn is_connected(&self, user: u32) -> bool {
        lock(self.shard(user))
            .get(&user)
            .is_some_and(|e| e.conn.is_some())
    }

    /// A user's accepted message (`base.from`, `base.id`, times and body set): delivered to
    /// `to`, to a business's inbox, or to every other member of `group`. Errs with a status
    /// and a reason when it has no recipient.
    pub fn user_send(
        &self,
        to: Option<u32>,
        group: Option<u32>,
        base: Delivery<'_>,
        (accepted_at, run): (Instant, u64),
    ) -> Result<(), (u32, &'static str)> {
        let accepted_at = self.admit(accepted_at);
        let from = base.from;
        match (to, group) {
            (Some(to), _) if protocol::is_business(to) => {
                self.business
                    .inbound(to - protocol::BUSINESS_BASE, from, base.id, base.kind);
                Ok(())
            }
            (Some(to), _) => {
                self.deliver(Delivery { to, ..base }, accepted_at, run);
                Ok(())
            }
            (None, Some(g)) => match self.group_send(g, base.body.len()) {
                Some(members) => {
                    for &m in members.iter().filter(|m| **m != from) {
                        self.deliver(Delivery { to: m, ..base }, accepted_at, run);
                    }
                    Ok(())
                }
                None => Err((404, "unknown group")),
            },
            (None, None) => Err((400, "send needs `to` or `group`")),
        }
    }

    /// Queues one delivery for `d.to`, applying the fault knobs. `d.seq` is assigned here;
    /// `run` is the sender's run (0 for a business send).
    pub fn deliver(&self, mut d: Delivery<'_>, accepted_at: Instant, run: u64) {
        let n = self.delivery_counter.fetch_add(1, Relaxed) + 1;
        let k = &self.knobs;
        if k.drop_every > 0 && n.is_multiple_of(k.drop_every) {
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        }
        let copies = if k.duplicate_every > 0 && n.is_multiple_of(k.duplicate_every) {
            2
        } else {
            1
        };
        let hold_back = k.reorder_every > 0 && n.is_multiple_of(k.reorder_every);
        let stall = (k.stall_every > 0 && n.is_multiple_of(k.stall_every)).then(|| {
            self.stats.stalled.fetch_add(1, Relaxed);
            k.stall
        });
        let reset = k.reset_every > 0 && n.is_multiple_of(k.reset_every);
        let extra = self
            .latency
            .as_ref()
            .map_or(0.0, |l| l.draw(&mut keyed::rng(k.api.seed, n, 5)).max(0.0));
        let mut due = accepted_at + k.delay + std::time::Duration::from_micros(extra as u64);
        if k.hold_every > 0 && n.is_multiple_of(k.hold_every) {
            self.stats.held.fetch_add(1, Relaxed);
            due += k.hold;
        }
        let conn = {
            let mut shard = lock(self.shard(d.to));
            let entry = shard.entry(d.to).or_default();
            if k.discard_offline && entry.conn.is_none() {
                self.stats.discarded.fetch_add(1, Relaxed);
                return;
            }
            entry.next_seq += 1;
            d.seq = entry.next_seq;
            let text: Utf8Bytes = protocol::msg(&d).into();
            if entry.unacked.len() >= self.limits.queue_per_user
                && let Some((_, _, old)) = entry.unacked.pop_front()
            {
                self.queued_bytes.fetch_sub(old.len() as u64, Relaxed);
                self.stats.overflowed.fetch_add(1, Relaxed);
            }
            // All queues together are bounded too: past it, a delivery is sent if its
            // recipient is online but not kept (an offline recipient never gets it).
            let size = text.len() as u64;
            if self.queued_bytes.load(Relaxed) + size > self.limits.queue_bytes as u64 {
                self.stats.queue_full.fetch_add(1, Relaxed);
            } else {
                self.queued_bytes.fetch_add(size, Relaxed);
                entry.unacked.push_back((d.seq, run, text.clone()));
            }
            entry.conn.clone().map(|c| (c, text))
        };
        self.stats.delivered.fetch_add(1, Relaxed);
        if let Some((c, text)) = conn {
            if let Some(line) = &self.delay_line {
                if copies == 2 {
                    self.stats.duplicated.fetch_add(1, Relaxed);
                    line.push(
                        c.tx.clone(),
                        Outbound {
                            due,
                            text: text.clone(),
                            hold_back: false,
                            delivery: true,
                            stall: None,
                            reset: false,
                            close: false,
                        },
                    );
                }
                line.push(
                    c.tx,
                    Outbound {
                        due,
                        text,
                        hold_back,
                        delivery: true,
                        stall,
                        reset,
                        close: false,
                    },
                );
                return;
            }
            if copies == 2 {
                self.stats.duplicated.fetch_add(1, Relaxed);
                let _ = c.tx.send(Outbound {
                    due,
                    text: text.clone(),
                    hold_back: false,
                    delivery: true,
                    stall: None,
                    reset: false,
                    close: false,
                });
            }
            let _ = c.tx.send(Outbound {
                due,
                text,
                hold_back,
                delivery: true,
                stall,
                reset,
                close: false,
            });
        }
    }

    pub fn snapshot(&self) -> ServerCounters {
        let b = &self.business;
        self.stats.counters((
            b.stats.accepted.load(Relaxed),
            b.stats.inbound.load(Relaxed),
            b.stats.statuses.load(Relaxed),
            b.refusals(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Hub::new(Knobs::default(), super::super::Limits::default(), tx)
    }

    #[test]
    fn http_sends_that_overtake_each_other_are_all_taken_once() {
        let hub = hub();
        for id in [512u64, 256, 1024, 768] {
            assert!(hub.accept_unordered_send(7, id), "{id} is new");
        }
        for id in [256u64, 1024] {
            assert!(
                !hub.accept_unordered_send(7, id),
                "{id} again is a retransmission"
            );
        }
        assert_eq!(hub.stats.retransmitted.load(Relaxed), 2);
        // An ordered (WebSocket) sender: below the highest is a retransmission.
        assert!(hub.accept_send(8, 512));
        assert!(!hub.accept_send(8, 256));
    }

    #[test]
    fn an_http_id_older_than_every_kept_one_is_counted_not_delivered() {
        let hub = hub();
        for i in 0..RECENT_HTTP_IDS as u64 {
            assert!(hub.accept_unordered_send(3, 1000 + i));
        }
        assert!(!hub.accept_unordered_send(3, 999));
        assert!(hub.accept_unordered_send(3, 5000));
    }
}

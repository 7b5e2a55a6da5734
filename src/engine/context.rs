//! What every part of one run shares: the scenario, population, profile, clock, recorders,
//! ledger, per-user inboxes and connection flags. Built once per run; owns no behaviour.

use super::id_start::IdStart;
use super::vu::reactions::{self, ReactionModel};
use crate::metrics::{Ledger, Recorders};
use crate::protocol::id::{REACTION_BIT, pattern_of, seq_of};
use crate::scenario::PatternKind;
use crate::scenario::Scenario;
use crate::workload::{Order, Population, Profile};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct RunContext {
    pub scenario: Arc<Scenario>,
    pub population: Arc<Population>,
    pub profile: Profile,
    /// Opens each user's session in the target's protocol.
    pub connector: crate::transport::Connector,
    pub connect_timeout: Duration,
    /// Set when goose starts launching users; every timestamp counts from it.
    epoch: OnceLock<Instant>,
    pub started: tokio::sync::Notify,
    pub recorders: Recorders,
    pub ledger: Ledger,
    /// Each person's orders from the pacer, by user index.
    pub inboxes: Box<[super::inbox::Inbox]>,
    /// Per user: since when its current connection is up, and how far its earlier ones
    /// carried a delivery's deadline. Tells the ledger from when an owed delivery was due.
    pub reach: super::reachability::Reachability,
    /// Where this run's sequence numbers begin (past every earlier run's).
    pub id_start: IdStart,
    /// The next sequence number the dispatcher issues (see `protocol::id::compose`).
    pub issued_seq: AtomicU64,
    /// Where counting a cut pacer's unreached schedule stopped, µs into the run (0: it
    /// did not stop early; see `dispatcher::count_unreached`).
    pub schedule_uncounted_from_us: AtomicU64,
    /// The scenario's reconnect storms, in time order.
    pub storms: Vec<super::reconnect::Storm>,
    /// Set when the run is over: users disconnect and idle until goose stops them.
    pub finished: AtomicBool,
    /// Cancelled with `finished`: every user's task returns to goose at once instead of
    /// finding out at its next wake-up.
    pub users_stop: tokio_util::sync::CancellationToken,
    /// How consumers react to each pattern's messages (reads, replies).
    pub reactions: Vec<Option<ReactionModel>>,
    /// Sequence numbers of messages users send on their own (replies), see `REACTION_BIT`.
    pub reaction_seq: AtomicU64,
    /// Mention-all storms' broadcast groups.
    pub storm_groups: Vec<reactions::StormGroup>,
    /// The presence pattern, if the scenario has one.
    pub presence: Option<PresenceModel>,
    /// The direct chat pattern typing indicators are counted under.
    pub typing_pattern: Option<u16>,
    /// Orders for the business API client, while it takes them.
    business_orders: Mutex<Option<mpsc::Sender<Order>>>,
    /// This process's share of a run split across machines (the whole run by default).
    pub segment: crate::workload::Segment,
    /// Set at the end of the schedule: users still owed deliveries while offline, whom the
    /// settle phase brings back (as a returning phone would) to collect them.
    returning: OnceLock<rustc_hash::FxHashSet<u32>>,
    /// Cancelled once `returning` is set, to wake the offline users it names.
    pub returning_set: tokio_util::sync::CancellationToken,
    /// Sends written on live connections and not yet confirmed or refused, striped by user
    /// so that users on different threads do not share one counter.
    unconfirmed: [CachePadded; ACK_STRIPES],
    /// Where each consumer's session runs (`shards`).
    pub shards: super::shards::Shards,
}

const ACK_STRIPES: usize = 16;

/// A counter alone on its cache line.
#[repr(align(64))]
#[derive(Default)]
struct CachePadded(std::sync::atomic::AtomicI64);

pub struct PresenceModel {
    pub pattern: u16,
    pub heartbeat: Duration,
    pub updates: bool,
}

impl RunContext {
    /// The run is over: users disconnect, and their tasks return to goose.
    pub fn finish(&self) {
        self.finished.store(true, Relaxed);
        self.users_stop.cancel();
        for inbox in self.inboxes.iter() {
            inbox.stop();
        }
    }

    pub fn new(
        scenario: Arc<Scenario>,
        population: Arc<Population>,
        connector: crate::transport::Connector,
    ) -> Result<Self, crate::scenario::sampler::SamplerError> {
        let reactions = reactions::models(&scenario)?;
        let storm_groups = reactions::storm_groups(&scenario, &population)?;
        let presence = scenario
            .patterns
            .iter()
            .enumerate()
            .find_map(|(i, p)| match &p.kind {
                PatternKind::Presence {
                    heartbeat, updates, ..
                } => Some(PresenceModel {
                    pattern: i as u16,
                    heartbeat: heartbeat.as_std(),
                    updates: *updates,
                }),
                _ => None,
            });
        let typing_pattern = scenario
            .patterns
            .iter()
            .position(|p| matches!(p.kind, PatternKind::DirectChat { .. }))
            .map(|i| i as u16);
        let users = population.users() as usize;
        let profile = Profile::for_scenario(&scenario, population.users());
        let patterns = scenario.patterns.len();
        let storms = super::reconnect::storms(&scenario);
        let id_start = IdStart::now();
        let deadline_us = scenario.loss_deadline.0;
        Ok(RunContext {
            reactions,
            storm_groups,
            reaction_seq: AtomicU64::new(id_start.reactions),
            presence,
            typing_pattern,
            business_orders: Mutex::new(None),
            segment: crate::workload::Segment::WHOLE,
            connect_timeout: scenario.target.connect_timeout.as_std(),
            scenario,
            population,
            profile,
            connector,
            epoch: OnceLock::new(),
            started: tokio::sync::Notify::new(),
            recorders: Recorders::new(patterns),
            ledger: Ledger::new(patterns),
            inboxes: (0..users).map(|_| Default::default()).collect(),
            reach: super::reachability::Reachability::new(users, deadline_us),
            returning: OnceLock::new(),
            returning_set: tokio_util::sync::CancellationToken::new(),
            unconfirmed: Default::default(),
            issued_seq: AtomicU64::new(id_start.scheduled),
            id_start,
            schedule_uncounted_from_us: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            users_stop: tokio_util::sync::CancellationToken::new(),
            storms,
            shards: super::shards::Shards::one(),
        })
    }

    /// The run's time zero (fixed on first use, normally by goose's test start).
    pub fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Fixes time zero now and wakes whoever waits for the start.
    pub fn mark_started(&self) {
        self.epoch();
        self.started.notify_waiters();
        self.started.notify_one();
    }

    /// Microseconds since the run's epoch: the one clock every timestamp uses.
    pub fn now_us(&self) -> u64 {
        self.epoch().elapsed().as_micros() as u64
    }

    pub fn instant_at(&self, t_us: u64) -> Instant {
        self.epoch() + Duration::from_micros(t_us)
    }

    pub fn inbox(&self, user: u32) -> Option<&super::inbox::Inbox> {
        self.inboxes.get(user as usize)
    }

    pub fn set_connected(&self, user: u32, on: bool) {
        self.reach.set(user, on, self.now_us());
    }

    pub fn is_connected(&self, user: u32) -> bool {
        self.connected_since(user).is_some()
    }

    /// When `user`'s current connection came up (µs on the run's clock), if it is up.
    pub fn connected_since(&self, user: u32) -> Option<u64> {
        self.reach.since(user)
    }

    /// Whether `user` has had a connection at any time in this run.
    pub fn ever_connected(&self, user: u32) -> bool {
        self.reach.ever_connected(user)
    }

    /// Why a message `sender` could not send was not sent, judged from its connection.
    pub fn not_sent_reason(&self, sender: u32) -> crate::metrics::NotSentReason {
        use crate::metrics::NotSentReason::*;
        if self.is_connected(sender) {
            Behind
        } else if self.ever_connected(sender) {
            SenderDisconnected
        } else {
            SenderNeverConnected
        }
    }

    /// `user`'s sends awaiting confirmation on a live connection changed by `delta`.
    pub fn awaiting_acks(&self, user: u32, delta: i64) {
        if delta != 0 {
            self.unconfirmed[user as usize % ACK_STRIPES]
                .0
                .fetch_add(delta, Relaxed);
        }
    }

    /// Sends written on live connections that are still waiting for the target's answer.
    pub fn unconfirmed_sends(&self) -> i64 {
        self.unconfirmed.iter().map(|c| c.0.load(Relaxed)).sum()
    }

    /// Starts the settle phase's return of `users` (once per run).
    pub fn bring_back(&self, users: rustc_hash::FxHashSet<u32>) {
        let _ = self.returning.set(users);
        self.returning_set.cancel();
    }

    /// Whether the settle phase wants `user` connected to collect what it is owed.
    pub fn is_returning(&self, user: u32) -> bool {
        self.returning.get().is_some_and(|r| r.contains(&user))
    }

    pub fn open_business_orders(&self, tx: mpsc::Sender<Order>) {
        if let Ok(mut slot) = self.business_orders.lock() {
            *slot = Some(tx);
        }
    }

    /// No more business orders: the client finishes what it has and stops.
    pub fn close_business_orders(&self) {
        if let Ok(mut slot) = self.business_orders.lock() {
            *slot = None;
        }
    }

    /// Hands a business order to the client; gives it back when it cannot take it.
    pub fn send_business_order(&self, order: Order) -> Result<(), Order> {
        let slot = self.business_orders.lock().map_err(|_| order)?;
        match slot.as_ref() {
            Some(tx) => tx.try_send(order).map_err(|e| e.into_inner()),
            None => Err(order),
        }
    }

    /// The pattern of an id this run issued, or `None` for an id it never issued.
    pub fn issued_pattern(&self, id: u64) -> Option<u16> {
        let seq = seq_of(id);
        let pattern = pattern_of(id) as usize;
        let issued = if seq & REACTION_BIT != 0 {
            (self.id_start.reactions..self.reaction_seq.load(Relaxed))
                .contains(&(seq & !REACTION_BIT))
        } else {
            (self.id_start.scheduled..self.issued_seq.load(Relaxed)).contains(&seq)
        };
        (issued && pattern < self.scenario.patterns.len()).then_some(pattern as u16)
    }

    /// Records how far this run's numbering went, so the next run of this process begins
    /// past it: at the report, and again when the run's context goes (a run that ended in
    /// an error never reports).
    pub fn note_ids_reached(&self) {
        IdStart::note_reached(
            self.issued_seq.load(Relaxed),
            self.reaction_seq.load(Relaxed),
        );
    }
}

impl Drop for RunContext {
    fn drop(&mut self) {
        self.note_ids_reached();
    }
}

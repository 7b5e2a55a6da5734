//! The closed model for one virtual user: one message open at a time; the next one goes
//! `think` after the last was answered (confirmed or refused), so the target's speed sets
//! the rate, as with wrk's connections or goose's users. Owns the loop's state and its
//! message ids; sending and measuring stay with the virtual user.

use crate::engine::context::RunContext;
use crate::protocol::id::{REACTION_BIT, compose as message_id};
use crate::protocol::keyed;
use crate::protocol::{MediaKind, Recipient};
use crate::scenario::PatternKind;
use crate::scenario::sampler::Sampler;
use crate::workload::Order;
use crate::workload::schedule::Action;
use rand_pcg::Pcg64Mcg;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Ids a user takes from the run's shared counter at once, so the counter is touched once
/// per this many messages rather than on every one.
const ID_BLOCK: u64 = 4096;

pub struct ClosedLoop {
    pattern: u16,
    think: Sampler,
    size: Sampler,
    rng: Pcg64Mcg,
    /// The message waiting for its answer.
    open: Option<u64>,
    /// When the next message is due; `None` while one is open.
    next_at: Option<Instant>,
    ids: std::ops::Range<u64>,
    to: Recipient,
}

impl ClosedLoop {
    /// The loop of the scenario's first closed_loop pattern, if it has one.
    pub fn for_user(ctx: &RunContext, user: u32) -> Option<ClosedLoop> {
        let (i, p) = ctx.scenario.closed_loop()?;
        let PatternKind::ClosedLoop { think } = &p.kind else {
            return None;
        };
        // Compiled distributions always build a sampler; a failure here means none is due.
        let think = Sampler::new(think).ok()?;
        let size = Sampler::new(&p.size).ok()?;
        let contacts = ctx.population.contacts(user);
        let to = Recipient::User(
            contacts
                .get(user as usize % contacts.len().max(1))
                .copied()
                .unwrap_or(user),
        );
        Some(ClosedLoop {
            pattern: i as u16,
            think,
            size,
            rng: keyed::rng(ctx.scenario.seed, user as u64, 0xC1),
            open: None,
            next_at: None,
            ids: 0..0,
            to,
        })
    }

    /// A fresh connection: the first message goes now (what was open on the last
    /// connection is forgotten; the loop only runs while connected).
    pub fn connected(&mut self, now: Instant) {
        self.open = None;
        self.next_at = Some(now);
    }

    pub fn due_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// The next message when it is due at `now`.
    pub fn take_due(&mut self, ctx: &RunContext, user: u32, now: Instant) -> Option<Order> {
        let due = self.next_at.filter(|at| *at <= now)?;
        if self.ids.is_empty() {
            let start = ctx.reaction_seq.fetch_add(ID_BLOCK, Relaxed);
            self.ids = start..start + ID_BLOCK;
        }
        let n = self.ids.next()?;
        let id = message_id(REACTION_BIT | n, self.pattern);
        self.open = Some(id);
        self.next_at = None;
        let intended_us = due.saturating_duration_since(ctx.epoch()).as_micros() as u64;
        Some(Order {
            intended_us,
            id,
            pattern: self.pattern,
            sender: user,
            to: self.to,
            size: self
                .size
                .sample_count(&mut self.rng, 1)
                .min(u32::MAX as u64) as u32,
            action: Action::Message {
                media: MediaKind::Text,
                media_bytes: 0,
            },
        })
    }

    /// The answer to message `id` came at `now`: the next one is due after a think time.
    pub fn answered(&mut self, id: u64, now: Instant) {
        if self.open != Some(id) {
            return;
        }
        self.open = None;
        let think_us = self.think.sample(&mut self.rng).max(0.0);
        self.next_at = Some(now + Duration::from_micros(think_us as u64));
    }
}

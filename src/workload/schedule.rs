//! The traffic schedule: every message with its intended send time, sender and recipient,
//! generated in time order from one seeded RNG, so the same seed gives the same traffic no
//! matter how the target behaves (open model). Owns the pattern state machines; not sending.

use super::population::Population;
use super::profile::Profile;
use crate::protocol::Recipient;
use crate::scenario::{PatternKind, Scenario, sampler::Sampler};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Exp, Zipf};
use rand_pcg::Pcg64Mcg;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// Message ids carry their pattern in the low bits, so any id tells its pattern.
pub const PATTERN_BITS: u32 = 8;
pub const MAX_PATTERNS: usize = 1 << PATTERN_BITS;

pub fn message_id(seq: u64, pattern: u16) -> u64 {
    (seq << PATTERN_BITS) | pattern as u64
}

pub fn pattern_of(id: u64) -> u16 {
    (id & (MAX_PATTERNS as u64 - 1)) as u16
}

pub fn seq_of(id: u64) -> u64 {
    id >> PATTERN_BITS
}

/// One scheduled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub intended_us: u64,
    pub id: u64,
    pub pattern: u16,
    pub sender: u32,
    pub to: Recipient,
    pub size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The next candidate conversation start of a direct_chat pattern (thinned Poisson).
    ConversationStart { pattern: u16 },
    /// The next message of a running conversation.
    ConversationTurn {
        pattern: u16,
        speaker: u32,
        listener: u32,
        remaining: u32,
    },
    /// The next candidate group message of a group_chat pattern.
    GroupMessage { pattern: u16 },
}

struct PatternSamplers {
    size: Sampler,
    messages: Option<Sampler>,
    gap: Option<Sampler>,
    /// Candidate arrivals across the whole population (thinned by eligibility).
    arrivals: Exp<f64>,
}

/// Why the schedule could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the schedule: {0}")]
pub struct ScheduleError(String);

pub struct Schedule {
    scenario: Arc<Scenario>,
    population: Arc<Population>,
    profile: Profile,
    samplers: Vec<PatternSamplers>,
    rng: Pcg64Mcg,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    tie: u64,
    next_seq: u64,
    end_us: u64,
}

impl Schedule {
    pub fn new(
        scenario: Arc<Scenario>,
        population: Arc<Population>,
        profile: Profile,
    ) -> Result<Self, ScheduleError> {
        let users = population.users() as f64;
        let mut samplers = Vec::new();
        let mut queue = BinaryHeap::new();
        let mut rng = Pcg64Mcg::seed_from_u64(scenario.seed);
        let err = |e: &dyn std::fmt::Display| ScheduleError(e.to_string());
        for (i, p) in scenario.patterns.iter().enumerate() {
            let (total_rate, messages, gap) = match &p.kind {
                PatternKind::DirectChat {
                    conversations,
                    messages,
                    gap,
                    ..
                } => (
                    conversations.per_second * users,
                    Some(Sampler::new(messages).map_err(|e| err(&e))?),
                    Some(Sampler::new(gap).map_err(|e| err(&e))?),
                ),
                PatternKind::GroupChat { rate, .. } => (
                    rate.per_second * population.groups().len() as f64,
                    None,
                    None,
                ),
                // A storm sends nothing: the virtual users act it out.
                PatternKind::ReconnectStorm { .. } => (0.0, None, None),
            };
            // Candidates at the highest rate of the run, thinned to the rate at each moment.
            let total_rate = total_rate * profile.max_multiplier();
            let arrivals = Exp::new(total_rate.max(1e-12)).map_err(|e| err(&e))?;
            samplers.push(PatternSamplers {
                size: Sampler::new(&p.size).map_err(|e| err(&e))?,
                messages,
                gap,
                arrivals,
            });
            if total_rate > 0.0 {
                let first = (arrivals.sample(&mut rng) * 1e6) as u64;
                let event = match p.kind {
                    PatternKind::DirectChat { .. } => {
                        Event::ConversationStart { pattern: i as u16 }
                    }
                    PatternKind::GroupChat { .. } => Event::GroupMessage { pattern: i as u16 },
                    PatternKind::ReconnectStorm { .. } => continue,
                };
                queue.push(Reverse((first, i as u64, event)));
            }
        }
        let end_us = profile.end().0;
        Ok(Schedule {
            scenario,
            population,
            profile,
            samplers,
            rng,
            queue,
            tie: 1 << 32,
            next_seq: 1,
            end_us,
        })
    }

    /// Sequence numbers handed out so far (ids below `message_id(next_seq, 0)` were issued).
    pub fn issued_seq(&self) -> u64 {
        self.next_seq
    }

    /// Intended time of the next event, if any remains before the end.
    pub fn peek_time(&self) -> Option<u64> {
        self.queue
            .peek()
            .map(|Reverse((t, _, _))| *t)
            .filter(|t| *t < self.end_us)
    }

    fn push(&mut self, t: u64, e: Event) {
        if t < self.end_us {
            self.tie += 1;
            self.queue.push(Reverse((t, self.tie, e)));
        }
    }

    fn order(&mut self, t: u64, pattern: u16, sender: u32, to: Recipient) -> Order {
        let size = self.samplers[pattern as usize]
            .size
            .sample_count(&mut self.rng, 0) as u32;
        let id = message_id(self.next_seq, pattern);
        self.next_seq += 1;
        Order {
            intended_us: t,
            id,
            pattern,
            sender,
            to,
            size,
        }
    }

    fn zipf_pick(rng: &mut Pcg64Mcg, n: usize, s: f64) -> usize {
        if n <= 1 {
            return 0;
        }
        match Zipf::new(n as f64, s) {
            Ok(z) => (z.sample(rng) as usize).clamp(1, n) - 1,
            Err(_) => rng.random_range(0..n),
        }
    }

    /// Thinning for rates that change over the run (stages' `rate`, spikes, diurnal curves).
    /// Draws nothing when the rates are flat, so flat schedules stay as they were.
    fn keep_at_rate(&mut self, t: u64) -> bool {
        if !self.profile.shaped() {
            return true;
        }
        let u: f64 = self.rng.random();
        u * self.profile.max_multiplier() < self.profile.multiplier(t)
    }

    fn next_arrival(&mut self, pattern: u16) -> u64 {
        (self.samplers[pattern as usize]
            .arrivals
            .sample(&mut self.rng)
            * 1e6)
            .max(1.0) as u64
    }

    fn gap(&mut self, pattern: u16) -> u64 {
        self.samplers[pattern as usize]
            .gap
            .as_ref()
            .map_or(1_000_000, |g| g.sample(&mut self.rng).max(1.0) as u64)
    }

    /// The next scheduled message intended at or before `until`, or `None` when there is
    /// none yet (or the schedule is over).
    pub fn next_order(&mut self, until: u64) -> Option<Order> {
        while let Some(&Reverse((t, _, _))) = self.queue.peek() {
            if t > until {
                return None;
            }
            let Some(Reverse((t, _, event))) = self.queue.pop() else {
                break;
            };
            if t >= self.end_us {
                continue;
            }
            match event {
                Event::ConversationStart { pattern } => {
                    let dt = self.next_arrival(pattern);
                    self.push(t + dt, event);
                    if !self.keep_at_rate(t) {
                        continue;
                    }
                    let PatternKind::DirectChat { partner_skew, .. } =
                        self.scenario.patterns[pattern as usize].kind
                    else {
                        continue;
                    };
                    let n = self.population.users();
                    let initiator = self.rng.random_range(0..n);
                    if !self.profile.eligible(initiator, t) {
                        continue;
                    }
                    let contacts = self.population.contacts(initiator);
                    if contacts.is_empty() {
                        continue;
                    }
                    let partner =
                        contacts[Self::zipf_pick(&mut self.rng, contacts.len(), partner_skew)];
                    if !self.profile.eligible(partner, t) {
                        continue;
                    }
                    let total = self.samplers[pattern as usize]
                        .messages
                        .as_ref()
                        .map_or(1, |m| m.sample_count(&mut self.rng, 1))
                        as u32;
                    if total > 1 {
                        self.schedule_turn(t, pattern, initiator, partner, total - 1);
                    }
                    return Some(self.order(t, pattern, initiator, Recipient::User(partner)));
                }
                Event::ConversationTurn {
                    pattern,
                    speaker,
                    listener,
                    remaining,
                } => {
                    if !(self.profile.eligible(speaker, t) && self.profile.eligible(listener, t)) {
                        continue;
                    }
                    if remaining > 1 {
                        self.schedule_turn(t, pattern, speaker, listener, remaining - 1);
                    }
                    return Some(self.order(t, pattern, speaker, Recipient::User(listener)));
                }
                Event::GroupMessage { pattern } => {
                    let dt = self.next_arrival(pattern);
                    self.push(t + dt, event);
                    if !self.keep_at_rate(t) {
                        continue;
                    }
                    let PatternKind::GroupChat { sender_skew, .. } =
                        self.scenario.patterns[pattern as usize].kind
                    else {
                        continue;
                    };
                    let groups = self.population.groups().len();
                    if groups == 0 {
                        continue;
                    }
                    let g = self.rng.random_range(0..groups);
                    let ranked_len = self.population.ranked_members(g as u32).len();
                    let pick = Self::zipf_pick(&mut self.rng, ranked_len, sender_skew);
                    let sender = self.population.ranked_members(g as u32)[pick];
                    if !self.profile.eligible(sender, t) {
                        continue;
                    }
                    return Some(self.order(t, pattern, sender, Recipient::Group(g as u32)));
                }
            }
        }
        None
    }

    /// Schedules the turn after one at `t`: the listener replies with probability `reply`.
    fn schedule_turn(&mut self, t: u64, pattern: u16, speaker: u32, listener: u32, remaining: u32) {
        let PatternKind::DirectChat { reply, .. } = self.scenario.patterns[pattern as usize].kind
        else {
            return;
        };
        let swap = self.rng.random::<f64>() < reply;
        let (s, l) = if swap {
            (listener, speaker)
        } else {
            (speaker, listener)
        };
        let at = t + self.gap(pattern);
        self.push(
            at,
            Event::ConversationTurn {
                pattern,
                speaker: s,
                listener: l,
                remaining,
            },
        );
    }
}

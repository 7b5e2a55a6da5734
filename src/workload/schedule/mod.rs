//! The traffic schedule: every message and signal with its intended time, sender and
//! recipient, generated in time order from one seeded RNG, so the same seed gives the same
//! traffic no matter how the target behaves (open model). Owns the pattern state machines
//! (`consumer` for chat, `business` for the business API); not sending.
//!
//! Reactions that depend on what actually arrived (a consumer reading or answering a business
//! message) are decided by the virtual users from keyed randomness, not here.

mod business;
mod consumer;

use super::population::Population;
use super::profile::Profile;
use crate::protocol::id::compose as message_id;
use crate::protocol::{MediaKind, Recipient};
use crate::scenario::{PatternKind, Scenario, sampler::Sampler};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Exp, Zipf};
use rand_pcg::Pcg64Mcg;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

/// What a scheduled order asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A consumer's chat message (text or a media reference).
    Message { media: MediaKind, media_bytes: u32 },
    /// A consumer shows a typing indicator to `to`.
    Typing,
    /// A consumer writes to a business (`interactive`: a button or list reply).
    CustomerMessage { interactive: bool },
    /// A business template: a campaign message (`marketing` or utility) or an OTP.
    Template { marketing: bool, otp: bool },
    /// A business's free-form reply inside the window.
    Reply { interactive: bool },
    /// A business marks message `of` read and shows a typing indicator.
    MarkRead { of: u64 },
    /// A free-form reply after the window closed: the API must refuse it with 131047.
    LateReply,
}

impl Action {
    /// Whether the business API (not a virtual consumer) carries it out.
    pub fn by_business(self) -> bool {
        matches!(
            self,
            Action::Template { .. }
                | Action::Reply { .. }
                | Action::MarkRead { .. }
                | Action::LateReply
        )
    }

    /// Whether it is a message owed to its recipient (not a signal).
    pub fn is_message(self) -> bool {
        !matches!(self, Action::Typing | Action::MarkRead { .. })
    }
}

/// One scheduled message or signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub intended_us: u64,
    pub id: u64,
    pub pattern: u16,
    /// A consumer, or the business number for business actions.
    pub sender: u32,
    pub to: Recipient,
    pub size: u32,
    pub action: Action,
}

impl Order {
    /// The consumer whose machine sends this order in a split run: the sender, or for a
    /// business's action the consumer it goes to, so a support conversation, a campaign
    /// message and its statuses all stay with one consumer's segment.
    pub fn owner(&self) -> u32 {
        match (self.action.by_business(), self.to) {
            (true, Recipient::User(u)) => u,
            _ => self.sender,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// The next candidate conversation start of a direct_chat pattern (thinned Poisson).
    ConversationStart { pattern: u16 },
    /// The next message of a running conversation (its type drawn when it was scheduled).
    ConversationTurn {
        pattern: u16,
        speaker: u32,
        listener: u32,
        remaining: u32,
        media: u8,
    },
    /// A typing indicator before a text.
    Typing { pattern: u16, from: u32, to: u32 },
    /// The next candidate group message of a group_chat pattern.
    GroupMessage { pattern: u16 },
    /// The `index`-th message of a broadcast campaign.
    Broadcast { pattern: u16, index: u32 },
    /// The next candidate customer-initiated support conversation.
    SupportStart { pattern: u16 },
    /// A customer's turn in a support conversation.
    SupportCustomer {
        pattern: u16,
        customer: u32,
        business: u32,
        turns_left: u32,
        agent: bool,
        interactive: bool,
    },
    /// The business's answer to customer message `of`.
    SupportAnswer {
        pattern: u16,
        customer: u32,
        business: u32,
        turns_left: u32,
        agent: bool,
        of: u64,
        asked_at: u64,
    },
    /// A human agent marks message `of` read and starts typing.
    SupportMarkRead {
        pattern: u16,
        customer: u32,
        business: u32,
        of: u64,
    },
    /// A reply after the window closed.
    SupportLate {
        pattern: u16,
        customer: u32,
        business: u32,
    },
    /// The next candidate OTP.
    Otp { pattern: u16 },
    /// A mention-all storm's one message into its broadcast group.
    MentionAll { pattern: u16, group: u32 },
}

struct PatternSamplers {
    size: Sampler,
    /// Per pattern kind: messages per conversation / support turns.
    count: Option<Sampler>,
    /// Gap between turns / customer think time.
    gap: Option<Sampler>,
    /// Media bytes per type (image, voice, video, other) for direct chat.
    media: Vec<Sampler>,
    /// Support: bot think, agent think, pick delay.
    think: Vec<Sampler>,
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
    /// Broadcast recipients per pattern (a shuffled prefix of the online users).
    campaign: Vec<Vec<u32>>,
    rng: Pcg64Mcg,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    /// Support: each (business, customer)'s last message so far, so a reply planned as
    /// "after the window" is only sent when no newer message reopened the window.
    last_customer_message: rustc_hash::FxHashMap<(u32, u32), u64>,
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
        let mut campaign = Vec::new();
        let mut queue = BinaryHeap::new();
        let mut rng = Pcg64Mcg::seed_from_u64(scenario.seed);
        let err = |e: &dyn std::fmt::Display| ScheduleError(e.to_string());
        let sampler = |d| Sampler::new(d).map_err(|e| err(&e));
        let mut storms = 0usize;
        for (i, p) in scenario.patterns.iter().enumerate() {
            let pattern = i as u16;
            let mut s = PatternSamplers {
                size: sampler(&p.size)?,
                count: None,
                gap: None,
                media: Vec::new(),
                think: Vec::new(),
                arrivals: Exp::new(1.0).map_err(|e| err(&e))?,
            };
            let mut recipients = Vec::new();
            let (rate, first) = match &p.kind {
                PatternKind::DirectChat {
                    conversations,
                    messages,
                    gap,
                    media,
                    ..
                } => {
                    s.count = Some(sampler(messages)?);
                    s.gap = Some(sampler(gap)?);
                    for d in &media.bytes {
                        s.media.push(sampler(d)?);
                    }
                    (
                        conversations.per_second * users,
                        Some(Event::ConversationStart { pattern }),
                    )
                }
                PatternKind::GroupChat {
                    rate, mention_all, ..
                } => {
                    if let Some(m) = mention_all {
                        let k = storms;
                        storms += 1;
                        queue.push(Reverse((
                            m.at.0,
                            i as u64,
                            Event::MentionAll {
                                pattern,
                                group: population.storm_group(k),
                            },
                        )));
                    }
                    (
                        rate.per_second * population.regular_groups() as f64,
                        Some(Event::GroupMessage { pattern }),
                    )
                }
                PatternKind::SupportConversation {
                    conversations,
                    turns,
                    customer_gap,
                    bot_think,
                    agent_think,
                    pick_delay,
                    ..
                } => {
                    s.count = Some(sampler(turns)?);
                    s.gap = Some(sampler(customer_gap)?);
                    s.think = vec![
                        sampler(bot_think)?,
                        sampler(agent_think)?,
                        sampler(pick_delay)?,
                    ];
                    (
                        conversations.per_second * users,
                        Some(Event::SupportStart { pattern }),
                    )
                }
                PatternKind::OtpBurst { rate, .. } => (*rate, Some(Event::Otp { pattern })),
                PatternKind::BusinessBroadcast {
                    start,
                    recipients: k,
                    ..
                } => {
                    // K distinct recipients: a partial Fisher-Yates shuffle of the online users.
                    let mut all: Vec<u32> = (0..population.users()).collect();
                    let k = (*k as usize).min(all.len());
                    for j in 0..k {
                        let pick = rng.random_range(j..all.len());
                        all.swap(j, pick);
                    }
                    all.truncate(k);
                    recipients = all;
                    if k > 0 {
                        queue.push(Reverse((
                            start.0,
                            i as u64,
                            Event::Broadcast { pattern, index: 0 },
                        )));
                    }
                    (0.0, None)
                }
                // Storms and presence send nothing: the virtual users act them out.
                // Storms, presence and closed loops are acted out by the virtual users.
                PatternKind::ReconnectStorm { .. }
                | PatternKind::Presence { .. }
                | PatternKind::ClosedLoop { .. } => (0.0, None),
            };
            // Candidates at the highest rate of the run, thinned to the rate at each moment.
            let rate = rate * profile.max_multiplier();
            s.arrivals = Exp::new(rate.max(1e-12)).map_err(|e| err(&e))?;
            if let Some(event) = first.filter(|_| rate > 0.0) {
                let t = (s.arrivals.sample(&mut rng) * 1e6) as u64;
                queue.push(Reverse((t, i as u64, event)));
            }
            samplers.push(s);
            campaign.push(recipients);
        }
        let end_us = profile.end().0;
        Ok(Schedule {
            scenario,
            population,
            profile,
            samplers,
            campaign,
            rng,
            queue,
            last_customer_message: rustc_hash::FxHashMap::default(),
            tie: 1 << 32,
            next_seq: 1,
            end_us,
        })
    }

    /// Numbers this schedule's messages from `first` on (1 by default): a run's ids begin
    /// past every earlier run's, so a target holding an earlier run's messages cannot pass
    /// them off as this run's.
    pub fn numbered_from(mut self, first: u64) -> Self {
        self.next_seq = first.max(1);
        self
    }

    /// The next sequence number to hand out (ids from the first number up to
    /// `message_id(next_seq, 0)` were issued).
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

    fn order(&mut self, t: u64, pattern: u16, sender: u32, to: Recipient, action: Action) -> Order {
        let size = if action.is_message() {
            self.samplers[pattern as usize]
                .size
                .sample_count(&mut self.rng, 0) as u32
        } else {
            0
        };
        let id = message_id(self.next_seq, pattern);
        self.next_seq += 1;
        Order {
            intended_us: t,
            id,
            pattern,
            sender,
            to,
            size,
            action,
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

    fn count(&mut self, pattern: u16) -> u32 {
        self.samplers[pattern as usize]
            .count
            .as_ref()
            .map_or(1, |m| m.sample_count(&mut self.rng, 1)) as u32
    }

    /// The next scheduled order intended at or before `until`, or `None` when there is
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
            let order = match event {
                Event::ConversationStart { pattern } => self.conversation_start(t, pattern),
                Event::ConversationTurn {
                    pattern,
                    speaker,
                    listener,
                    remaining,
                    media,
                } => self.conversation_turn(t, pattern, speaker, listener, remaining, media),
                Event::Typing { pattern, from, to } => (self.profile.eligible(from, t)
                    && self.profile.eligible(to, t))
                .then(|| self.order(t, pattern, from, Recipient::User(to), Action::Typing)),
                Event::GroupMessage { pattern } => self.group_message(t, pattern),
                Event::Broadcast { pattern, index } => self.broadcast(t, pattern, index),
                Event::SupportStart { pattern } => self.support_start(t, pattern),
                Event::SupportCustomer {
                    pattern,
                    customer,
                    business,
                    turns_left,
                    agent,
                    interactive,
                } => self.support_customer(
                    t,
                    pattern,
                    (customer, business),
                    turns_left,
                    agent,
                    interactive,
                ),
                Event::SupportAnswer {
                    pattern,
                    customer,
                    business,
                    turns_left,
                    agent,
                    of,
                    asked_at,
                } => self.support_answer(
                    t,
                    pattern,
                    (customer, business),
                    turns_left,
                    agent,
                    (of, asked_at),
                ),
                Event::SupportMarkRead {
                    pattern,
                    customer,
                    business,
                    of,
                } => Some(self.order(
                    t,
                    pattern,
                    business,
                    Recipient::User(customer),
                    Action::MarkRead { of },
                )),
                Event::SupportLate {
                    pattern,
                    customer,
                    business,
                } => self.support_late(t, pattern, customer, business),
                Event::Otp { pattern } => self.otp(t, pattern),
                Event::MentionAll { pattern, group } => {
                    let sender = *self.population.ranked_members(group).first()?;
                    self.profile.eligible(sender, t).then(|| {
                        self.order(
                            t,
                            pattern,
                            sender,
                            Recipient::Group(group),
                            Action::Message {
                                media: MediaKind::Text,
                                media_bytes: 0,
                            },
                        )
                    })
                }
            };
            if order.is_some() {
                return order;
            }
        }
        None
    }
}

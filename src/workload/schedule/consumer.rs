//! Consumer chat state machines: one-to-one conversations (Zipf partners, turns with bimodal
//! gaps, speaker alternation, a media mix, typing before texts) and group messages.

use super::{Action, Event, Order, Schedule};
use crate::protocol::{MediaKind, Recipient};
use crate::scenario::PatternKind;
use rand::Rng;

/// Composing a text takes about this long per character (docs/workloads.md §5 P1, assumption).
const COMPOSE_US_PER_CHAR: u64 = 250_000;
const COMPOSE_MAX_US: u64 = 60_000_000;

impl Schedule {
    pub(super) fn conversation_start(&mut self, t: u64, pattern: u16) -> Option<Order> {
        let dt = self.next_arrival(pattern);
        self.push(t + dt, Event::ConversationStart { pattern });
        if !self.keep_at_rate(t) {
            return None;
        }
        let PatternKind::DirectChat { partner_skew, .. } =
            self.scenario.patterns[pattern as usize].kind
        else {
            return None;
        };
        let n = self.population.users();
        let initiator = self.rng.random_range(0..n);
        if !self.profile.eligible(initiator, t) {
            return None;
        }
        let contacts = self.population.contacts(initiator);
        if contacts.is_empty() {
            return None;
        }
        let partner = contacts[Self::zipf_pick(&mut self.rng, contacts.len(), partner_skew)];
        if !self.profile.eligible(partner, t) {
            return None;
        }
        let total = self.count(pattern);
        // The first message goes out at the conversation's start; its composing happened
        // before anything was scheduled, so it has no typing indicator.
        self.plan_turn(t, t, pattern, initiator, partner, total);
        None
    }

    pub(super) fn conversation_turn(
        &mut self,
        t: u64,
        pattern: u16,
        speaker: u32,
        listener: u32,
        remaining: u32,
        media: u8,
    ) -> Option<Order> {
        if !(self.profile.eligible(speaker, t) && self.profile.eligible(listener, t)) {
            return None;
        }
        if remaining > 1 {
            let PatternKind::DirectChat { reply, .. } =
                self.scenario.patterns[pattern as usize].kind
            else {
                return None;
            };
            let (s, l) = if self.rng.random::<f64>() < reply {
                (listener, speaker)
            } else {
                (speaker, listener)
            };
            let at = t + self.gap(pattern);
            self.plan_turn(t, at, pattern, s, l, remaining - 1);
        }
        let kind = MediaKind::ALL[media as usize % MediaKind::ALL.len()];
        let media_bytes = match kind {
            MediaKind::Text => 0,
            k => self.samplers[pattern as usize].media[k as usize - 1]
                .sample(&mut self.rng)
                .max(1.0) as u32,
        };
        Some(self.order(
            t,
            pattern,
            speaker,
            Recipient::User(listener),
            Action::Message {
                media: kind,
                media_bytes,
            },
        ))
    }

    /// Schedules a turn meant to be sent at `at` (decided at `now`): its type, and for a later
    /// text possibly a typing indicator while it is composed (from `at` minus the compose
    /// time, but not before `now`).
    fn plan_turn(
        &mut self,
        now: u64,
        at: u64,
        pattern: u16,
        speaker: u32,
        listener: u32,
        remaining: u32,
    ) {
        let PatternKind::DirectChat {
            ref media, typing, ..
        } = self.scenario.patterns[pattern as usize].kind
        else {
            return;
        };
        let u: f64 = self.rng.random();
        let mut acc = 0.0;
        let mut kind = 0u8;
        for (i, share) in media.shares.iter().enumerate() {
            acc += share;
            if u < acc {
                kind = i as u8;
                break;
            }
        }
        if at > now && kind == 0 && typing > 0.0 && self.rng.random::<f64>() < typing {
            let chars = self.samplers[pattern as usize]
                .size
                .sample(&mut self.rng)
                .max(1.0) as u64;
            let compose = (chars * COMPOSE_US_PER_CHAR).min(COMPOSE_MAX_US);
            let start = at.saturating_sub(compose).max(now);
            self.push(
                start,
                Event::Typing {
                    pattern,
                    from: speaker,
                    to: listener,
                },
            );
        }
        self.push(
            at,
            Event::ConversationTurn {
                pattern,
                speaker,
                listener,
                remaining,
                media: kind,
            },
        );
    }

    pub(super) fn group_message(&mut self, t: u64, pattern: u16) -> Option<Order> {
        let dt = self.next_arrival(pattern);
        self.push(t + dt, Event::GroupMessage { pattern });
        if !self.keep_at_rate(t) {
            return None;
        }
        let PatternKind::GroupChat { sender_skew, .. } =
            self.scenario.patterns[pattern as usize].kind
        else {
            return None;
        };
        let groups = self.population.regular_groups();
        if groups == 0 {
            return None;
        }
        let g = self.rng.random_range(0..groups);
        let ranked_len = self.population.ranked_members(g as u32).len();
        let pick = Self::zipf_pick(&mut self.rng, ranked_len, sender_skew);
        let sender = self.population.ranked_members(g as u32)[pick];
        if !self.profile.eligible(sender, t) {
            return None;
        }
        Some(self.order(
            t,
            pattern,
            sender,
            Recipient::Group(g as u32),
            Action::Message {
                media: MediaKind::Text,
                media_bytes: 0,
            },
        ))
    }
}

//! What a consumer does after a message arrives, decided from keyed randomness (seed, message,
//! reader) so the same run makes the same choices: read it after a delay (a read receipt, or a
//! `read` status for a business), and for business messages perhaps reply, which opens the
//! 24-hour window. Owns the models and the per-user timer queue; sending is in `VirtualUser`.

use crate::protocol::keyed;
use crate::scenario::sampler::{Sampler, SamplerError};
use crate::scenario::{PatternKind, Scenario};
use rand::Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One pattern's reaction model.
pub struct ReactionModel {
    pub read: f64,
    pub read_delay: Sampler,
    pub reply: f64,
    pub reply_delay: Option<Sampler>,
}

/// Reaction models by pattern index (`None`: that pattern's messages get no reaction).
pub fn models(s: &Scenario) -> Result<Vec<Option<ReactionModel>>, SamplerError> {
    s.patterns
        .iter()
        .map(|p| match &p.kind {
            PatternKind::DirectChat {
                read, read_delay, ..
            } => Ok(Some(ReactionModel {
                read: *read,
                read_delay: Sampler::new(read_delay)?,
                reply: 0.0,
                reply_delay: None,
            })),
            PatternKind::BusinessBroadcast { reaction, .. } => Ok(Some(ReactionModel {
                read: reaction.read,
                read_delay: Sampler::new(&reaction.read_delay)?,
                reply: reaction.reply,
                reply_delay: Some(Sampler::new(&reaction.reply_delay)?),
            })),
            _ => Ok(None),
        })
        .collect()
}

/// Something a user will do later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pending {
    /// Read message `id` from `from` (`wamid` for a business message, else 0).
    Read { id: u64, from: u32, wamid: u64 },
    /// Reply to business `business` about message `of` of `pattern`.
    Reply {
        business: u32,
        pattern: u16,
        of: u64,
    },
    /// Open group `group` (after a mention-all storm) and fetch its history.
    OpenGroup { group: u32, pattern: u16 },
}

/// A mention-all storm's broadcast group and how its members react.
pub struct StormGroup {
    pub group: u32,
    pub pattern: u16,
    pub open: f64,
    pub open_delay: Sampler,
}

/// The scenario's storm groups, in pattern order (group ids from the population).
pub fn storm_groups(
    s: &Scenario,
    population: &crate::workload::Population,
) -> Result<Vec<StormGroup>, SamplerError> {
    let mut out = Vec::new();
    for (i, p) in s.patterns.iter().enumerate() {
        if let PatternKind::GroupChat {
            mention_all: Some(m),
            ..
        } = &p.kind
        {
            out.push(StormGroup {
                group: population.storm_group(out.len()),
                pattern: i as u16,
                open: m.open,
                open_delay: Sampler::new(&m.open_delay)?,
            });
        }
    }
    Ok(out)
}

/// A user's timer queue of pending reactions, by due time (µs on the run's clock).
#[derive(Default)]
pub struct Reactions {
    queue: BinaryHeap<Reverse<(u64, Pending)>>,
}

/// Reactions a user keeps waiting at most. With read delays of many minutes (half of the
/// research default reads come after about 20 minutes) the plans would otherwise pile up
/// for the whole run; past this many a new one is not made, and counted (`reads_skipped`).
pub const MAX_PENDING: usize = 64;

impl Reactions {
    /// Decides the reactions to message `id` received by `user` at `now_us`. Returns false
    /// when the user already has `MAX_PENDING` plans and makes none for this message.
    pub fn decide(
        &mut self,
        model: &ReactionModel,
        (seed, key): (u64, u64),
        (id, user, from, wamid, pattern): (u64, u32, u32, u64, u16),
        now_us: u64,
        business: Option<u32>,
    ) -> bool {
        if self.queue.len() >= MAX_PENDING {
            return false;
        }
        let mut rng = keyed::rng(seed, key, user as u64);
        if rng.random::<f64>() < model.read {
            let delay = model.read_delay.sample(&mut rng).max(0.0) as u64;
            self.queue
                .push(Reverse((now_us + delay, Pending::Read { id, from, wamid })));
        }
        if let (Some(b), Some(reply_delay)) = (business, &model.reply_delay)
            && rng.random::<f64>() < model.reply
        {
            let delay = reply_delay.sample(&mut rng).max(0.0) as u64;
            self.queue.push(Reverse((
                now_us + delay,
                Pending::Reply {
                    business: b,
                    pattern,
                    of: id,
                },
            )));
        }
        true
    }

    /// Whether and when `user` opens storm group `storm.group` after a message keyed `key`.
    pub fn decide_open(
        &mut self,
        storm: &StormGroup,
        (seed, key): (u64, u64),
        user: u32,
        now_us: u64,
    ) {
        let mut rng = keyed::rng(seed, key ^ 0x0BE7, user as u64);
        if self.queue.len() < MAX_PENDING && rng.random::<f64>() < storm.open {
            let delay = storm.open_delay.sample(&mut rng).max(0.0) as u64;
            self.queue.push(Reverse((
                now_us + delay,
                Pending::OpenGroup {
                    group: storm.group,
                    pattern: storm.pattern,
                },
            )));
        }
    }

    pub fn next_due(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((t, _))| *t)
    }

    /// The next reaction due at or before `now_us`, with its intended time.
    pub fn pop_due(&mut self, now_us: u64) -> Option<(u64, Pending)> {
        if self.next_due()? > now_us {
            return None;
        }
        self.queue.pop().map(|Reverse(x)| x)
    }
}

//! The message ledger: every sent message is tracked per recipient until delivered, so that
//! at the end `owed = delivered + lost + in flight` holds and duplicates and strays are
//! caught. Sharded by message id; no lock is global. Owns accounting, not timing.

use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex, MutexGuard};

const SHARDS: usize = 64;

/// Who a message is owed to.
#[derive(Debug, Clone)]
pub enum Owed {
    One(u32),
    /// Sorted members of the group, with one bit per member still owed.
    Group {
        members: Arc<[u32]>,
        outstanding: Box<[u64]>,
    },
}

impl Owed {
    /// Calls `f` for every recipient still owed this message.
    fn each_outstanding(&self, mut f: impl FnMut(u32)) {
        match self {
            Owed::One(r) => f(*r),
            Owed::Group {
                members,
                outstanding,
            } => {
                for (i, m) in members.iter().enumerate() {
                    if outstanding[i / 64] & (1 << (i % 64)) != 0 {
                        f(*m);
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    intended_us: u64,
    /// When the target could first have it: the intended time, or later for a message the
    /// sender held back on purpose (a business client slowed to its rate tier).
    due_from_us: u64,
    pattern: u16,
    sender: u32,
    owed: Owed,
    remaining: u32,
}

/// What one received delivery turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// First delivery to this recipient. `last_of_message` is set when nobody else is owed it.
    First {
        pattern: u16,
        last_of_message: bool,
        intended_us: u64,
        /// When the target could first have had it (see [`Ledger::defer`]).
        due_from_us: u64,
    },
    /// This recipient already had it.
    Duplicate { pattern: u16 },
    /// Not a message chatload sent to this recipient.
    Unexpected,
    /// Arrived after the run was settled: the settlement already counted the message (in
    /// flight or lost), so this copy changes nothing.
    AfterSettlement,
}

/// Deliveries still owed at the end, per pattern: lost (past their deadline; the late
/// arrivals noted with [`Ledger::note_late`] included), in flight (not yet due) and
/// unverified (owed to a recipient whose target cannot show whether it kept them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settlement {
    pub lost: Vec<u64>,
    /// Lost deliveries by the second their message was meant to leave (index k: the
    /// interval ending at k + 1 s), so loss can be drawn over time.
    pub lost_by_second: Vec<u64>,
    pub in_flight: Vec<u64>,
    pub unverified: Vec<u64>,
}

/// What the end of a run knows of one owed delivery's recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The recipient could take it from `since_us` on (its connection's start, or 0): the
    /// delivery was due `loss_deadline` after the later of that and its intended time.
    DueFrom { since_us: u64 },
    /// Nobody can tell whether the target still holds it for the recipient.
    Unverified,
}

/// One lock's part of the ledger. `sealed` once [`Ledger::settle_for_good`] has counted it: from then
/// on nothing is opened, received or withdrawn in it, so the settlement and the run's counters
/// are one consistent cut even while users are still stopping.
#[derive(Default)]
struct Shard {
    entries: FxHashMap<u64, Entry>,
    sealed: bool,
}

pub struct Ledger {
    shards: Box<[Mutex<Shard>]>,
    /// Deliveries that arrived after their deadline, by the second they were meant to leave.
    late_by_second: Mutex<Vec<u64>>,
    /// Per pattern: ids of messages fully delivered are gone from the map; a later copy of
    /// one is a duplicate, told apart from strays by the id range chatload issued.
    patterns: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledger {
    pub fn new(patterns: usize) -> Self {
        Ledger {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            late_by_second: Mutex::new(Vec::new()),
            patterns,
        }
    }

    fn shard(&self, id: u64) -> &Mutex<Shard> {
        &self.shards[(id as usize) % SHARDS]
    }

    /// Records a message about to be written; returns how many deliveries it owes, or
    /// `None` when the run is already settled (the message must not be sent then).
    pub fn open(
        &self,
        id: u64,
        pattern: u16,
        sender: u32,
        intended_us: u64,
        owed: Owed,
    ) -> Option<u32> {
        let remaining = match &owed {
            Owed::One(_) => 1,
            Owed::Group { outstanding, .. } => outstanding.iter().map(|w| w.count_ones()).sum(),
        };
        let mut shard = lock(self.shard(id));
        if shard.sealed {
            return None;
        }
        if remaining > 0 {
            shard.entries.insert(
                id,
                Entry {
                    intended_us,
                    due_from_us: intended_us,
                    pattern,
                    sender,
                    owed,
                    remaining,
                },
            );
        }
        Some(remaining)
    }

    /// Builds the owed set of a group message: every member but the sender.
    pub fn group_owed(members: &Arc<[u32]>, sender: u32) -> Owed {
        Self::group_owed_to(members, sender, |_| true)
    }

    /// A group message owed only to the members `present` says the group reaches now (a
    /// room that keeps nothing for members who are not in it, as XMPP's MUC).
    pub fn group_owed_to(members: &Arc<[u32]>, sender: u32, present: impl Fn(u32) -> bool) -> Owed {
        let mut bits = vec![0u64; members.len().div_ceil(64)].into_boxed_slice();
        for (i, m) in members.iter().enumerate() {
            if *m != sender && present(*m) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        Owed::Group {
            members: members.clone(),
            outstanding: bits,
        }
    }

    /// Marks delivery of message `id` to `recipient`. `issued` says whether chatload ever
    /// sent that id (so a late copy of a completed message is a duplicate, not a stray).
    pub fn receive(
        &self,
        id: u64,
        recipient: u32,
        issued: impl Fn(u64) -> Option<u16>,
    ) -> Received {
        let mut shard = lock(self.shard(id));
        if shard.sealed {
            return Received::AfterSettlement;
        }
        let Some(entry) = shard.entries.get_mut(&id) else {
            drop(shard);
            return match issued(id) {
                Some(pattern) => Received::Duplicate { pattern },
                None => Received::Unexpected,
            };
        };
        let pattern = entry.pattern;
        let intended_us = entry.intended_us;
        let due_from_us = entry.due_from_us;
        let was_owed = match &mut entry.owed {
            Owed::One(r) => {
                if *r != recipient {
                    return Received::Unexpected;
                }
                true
            }
            Owed::Group {
                members,
                outstanding,
            } => {
                if recipient == entry.sender {
                    return Received::Unexpected;
                }
                let Ok(i) = members.binary_search(&recipient) else {
                    return Received::Unexpected;
                };
                let bit = 1u64 << (i % 64);
                let owed = outstanding[i / 64] & bit != 0;
                outstanding[i / 64] &= !bit;
                owed
            }
        };
        if !was_owed {
            return Received::Duplicate { pattern };
        }
        entry.remaining -= 1;
        let last = entry.remaining == 0;
        if last {
            shard.entries.remove(&id);
        }
        Received::First {
            pattern,
            last_of_message: last,
            intended_us,
            due_from_us,
        }
    }

    /// Message `id` went to the target only at `from_us`, held back on purpose by its
    /// sender: its deliveries are due from then (their latency still counts from the
    /// intended time).
    pub fn defer(&self, id: u64, from_us: u64) {
        if let Some(e) = lock(self.shard(id)).entries.get_mut(&id) {
            e.due_from_us = e.due_from_us.max(from_us);
        }
    }

    /// Withdraws message `id` (it will never be delivered: refused or reported failed).
    /// Returns the deliveries that were still owed.
    /// Nothing once the run is settled (the settlement counted it already).
    pub fn cancel(&self, id: u64) -> u32 {
        let mut shard = lock(self.shard(id));
        if shard.sealed {
            return 0;
        }
        shard.entries.remove(&id).map_or(0, |e| e.remaining)
    }

    /// Deliveries still owed.
    pub fn outstanding(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                lock(s)
                    .entries
                    .values()
                    .map(|e| e.remaining as u64)
                    .sum::<u64>()
            })
            .sum()
    }

    /// Calls `f(recipient, due_from_us)` for every delivery still owed (see
    /// [`Ledger::defer`]). Holds one shard's lock at a time: `f` must not call back into the
    /// ledger.
    pub fn visit_outstanding(&self, mut f: impl FnMut(u32, u64)) {
        for shard in self.shards.iter() {
            for e in lock(shard).entries.values() {
                e.owed.each_outstanding(|r| f(r, e.due_from_us));
            }
        }
    }

    /// Notes that a delivery of a message meant to leave at `intended_us` arrived after its
    /// deadline (the caller counts it lost and late), so loss over time shows it.
    pub fn note_late(&self, intended_us: u64) {
        add_at_second(&mut lock(&self.late_by_second), intended_us);
    }

    /// Classifies what is still owed at `now_us`: `verify(recipient, intended_us, due_from_us)`
    /// says from when the recipient could take it, or that nobody can tell. Without sealing: the
    /// tests ask the same ledger several times.
    #[cfg(test)]
    pub fn settle(
        &self,
        now_us: u64,
        deadline_us: u64,
        verify: impl FnMut(u32, u64, u64) -> Verification,
    ) -> Settlement {
        self.settle_sealing(now_us, deadline_us, verify, false)
    }

    /// [`Ledger::settle`] for the run's end: each shard, as it is counted, is sealed and takes
    /// nothing more, so the settlement and the counters stay one cut while users stop.
    pub fn settle_for_good(
        &self,
        now_us: u64,
        deadline_us: u64,
        verify: impl FnMut(u32, u64, u64) -> Verification,
    ) -> Settlement {
        self.settle_sealing(now_us, deadline_us, verify, true)
    }

    fn settle_sealing(
        &self,
        now_us: u64,
        deadline_us: u64,
        mut verify: impl FnMut(u32, u64, u64) -> Verification,
        seal: bool,
    ) -> Settlement {
        let n = self.patterns + 1;
        let mut s = Settlement {
            lost: vec![0; n],
            lost_by_second: lock(&self.late_by_second).clone(),
            in_flight: vec![0; n],
            unverified: vec![0; n],
        };
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.sealed |= seal;
            for e in shard.entries.values() {
                let p = e.pattern as usize;
                let mut count =
                    |recipient: u32| match verify(recipient, e.intended_us, e.due_from_us) {
                        Verification::Unverified => s.unverified[p] += 1,
                        Verification::DueFrom { since_us } => {
                            if e.due_from_us.max(since_us) + deadline_us <= now_us {
                                s.lost[p] += 1;
                                add_at_second(&mut s.lost_by_second, e.intended_us);
                            } else {
                                s.in_flight[p] += 1;
                            }
                        }
                    };
                e.owed.each_outstanding(&mut count);
            }
        }
        s
    }
}

/// Adds one to the count of the second `t_us` falls in.
fn add_at_second(by_second: &mut Vec<u64>, t_us: u64) {
    let k = (t_us / 1_000_000) as usize;
    if by_second.len() <= k {
        by_second.resize(k + 1, 0);
    }
    by_second[k] += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_counted_once_and_strays_are_caught() {
        let l = Ledger::new(1);
        let issued = |id: u64| (id < 100).then_some(0u16);
        assert_eq!(l.open(1, 0, 5, 10, Owed::One(6)), Some(1));
        assert_eq!(l.receive(1, 7, issued), Received::Unexpected);
        assert_eq!(
            l.receive(1, 6, issued),
            Received::First {
                pattern: 0,
                last_of_message: true,
                intended_us: 10,
                due_from_us: 10
            }
        );
        assert_eq!(l.receive(1, 6, issued), Received::Duplicate { pattern: 0 });
        assert_eq!(l.receive(500, 6, issued), Received::Unexpected);

        let members: Arc<[u32]> = vec![1, 2, 3].into();
        // Only members in the room are owed a room's message.
        assert_eq!(
            l.open(90, 0, 2, 10, Ledger::group_owed_to(&members, 2, |m| m == 3)),
            Some(1)
        );
        assert!(matches!(
            l.receive(90, 3, issued),
            Received::First {
                last_of_message: true,
                ..
            }
        ));
        assert_eq!(
            l.open(2, 0, 2, 10, Ledger::group_owed(&members, 2)),
            Some(2)
        );
        assert_eq!(
            l.receive(2, 1, issued),
            Received::First {
                pattern: 0,
                last_of_message: false,
                intended_us: 10,
                due_from_us: 10
            }
        );
        assert_eq!(l.receive(2, 1, issued), Received::Duplicate { pattern: 0 });
        assert_eq!(l.receive(2, 2, issued), Received::Unexpected);
        assert_eq!(l.outstanding(), 1);
        let connected = |_, _, _| Verification::DueFrom { since_us: 0 };
        let s = l.settle(100, 50, connected);
        assert_eq!((s.lost[0], s.lost_by_second.clone()), (1, vec![1]));
        let s = l.settle(20, 50, connected);
        assert_eq!(s.in_flight[0], 1);
        // Owed from a later connection: due 50 after it, not after the intended time.
        let s = l.settle(100, 50, |_, _, _| Verification::DueFrom { since_us: 70 });
        assert_eq!((s.lost[0], s.in_flight[0]), (0, 1));
        let s = l.settle(100, 50, |_, _, _| Verification::Unverified);
        assert_eq!((s.lost[0], s.unverified[0]), (0, 1));
        let mut seen = Vec::new();
        l.visit_outstanding(|r, t| seen.push((r, t)));
        assert_eq!(seen, vec![(3, 10)]);
        l.note_late(2_500_000);
        assert_eq!(l.settle(100, 50, connected).lost_by_second, vec![1, 0, 1]);
        // Held back by its sender until 500: due from then, so still in flight at 520.
        assert_eq!(l.open(4, 0, 5, 10, Owed::One(7)), Some(1));
        l.defer(4, 500);
        let s = l.settle(520, 50, connected);
        assert_eq!((s.lost[0], s.in_flight[0]), (1, 1));
        assert_eq!(l.cancel(4), 1);
        assert_eq!(
            l.receive(2, 3, issued),
            Received::First {
                pattern: 0,
                last_of_message: true,
                intended_us: 10,
                due_from_us: 10
            }
        );
        assert_eq!(l.outstanding(), 0);
        assert_eq!(l.open(3, 0, 5, 10, Owed::One(6)), Some(1));
        assert_eq!(l.cancel(3), 1);
        assert_eq!(l.cancel(3), 0);
        assert_eq!(l.receive(3, 6, issued), Received::Duplicate { pattern: 0 });
    }

    /// Once settled, the ledger is one cut: a message opened, a delivery received or a
    /// message withdrawn afterwards (users still stopping) changes nothing the settlement
    /// counted, so `sent = delivered + lost + in_flight + unverified` holds.
    #[test]
    fn nothing_changes_after_the_settlement() {
        let l = Ledger::new(1);
        let issued = |id: u64| (id < 100).then_some(0u16);
        assert_eq!(l.open(1, 0, 5, 10, Owed::One(6)), Some(1));
        assert_eq!(l.open(2, 0, 5, 10, Owed::One(7)), Some(1));
        let s = l.settle_for_good(20, 1_000, |_, _, _| Verification::DueFrom { since_us: 0 });
        assert_eq!((s.in_flight[0], s.lost[0]), (2, 0));
        assert_eq!(l.open(3, 0, 5, 30, Owed::One(6)), None);
        assert_eq!(l.receive(1, 6, issued), Received::AfterSettlement);
        assert_eq!(l.cancel(2), 0);
        assert_eq!(l.outstanding(), 2);
    }
}

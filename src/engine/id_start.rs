//! Where a run's message sequence numbers begin: past every number an earlier run issued, so
//! that what a target kept from an earlier run (XMPP offline storage after a run stopped with
//! Ctrl-C, a broker's queue after a capacity step it fell behind in) is never taken for this
//! run's messages. The same seed gives the same traffic, not the same ids: with ids that
//! began at 1 in every run, Prosody's stored messages from an interrupted run were the next
//! run's strays, their receipts its receipts, and one that came after the next run had sent
//! a message of the same number would have been its delivery.
//!
//! Within one process the numbers go on from the last run's (capacity steps, a test's
//! second run). Across processes they start from the wall clock in milliseconds, with room
//! for 1,024 scheduled messages a millisecond, so an earlier run that issued fewer than that
//! per millisecond of its length (a million a second) ended below this run's first number.
//! Owns the first numbers; not the id layout (`protocol::id`) nor who issues them (the
//! schedule, the users' replies).

use crate::protocol::id::{REACTION_BIT, compose, pattern_of, seq_of};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The first sequence numbers of one run, one per id stream (see `protocol::id::stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdStart {
    /// The schedule's messages.
    pub scheduled: u64,
    /// The users' own messages (replies, a closed loop's requests), without `REACTION_BIT`.
    pub reactions: u64,
}

/// One stream's clock: how many numbers a millisecond may take, and how many milliseconds
/// it counts before it wraps (the wrap comes back to numbers issued that long ago).
struct Clock {
    per_ms_bits: u32,
    ms_bits: u32,
}

/// 1,024 numbers a millisecond (a million messages a second) over 2^33 ms (99 days). Each
/// stream's numbers must stay below `REACTION_BIT` (2^44) for its ids to stay below 2^53
/// (`protocol::id`): a start below 2^43 leaves 8.8 × 10^12 numbers for the run.
const SCHEDULED: Clock = Clock {
    per_ms_bits: 10,
    ms_bits: 33,
};
/// A closed loop takes its numbers in blocks of 4,096 per user, so the users' own stream
/// has room for 4,096 a millisecond (1,000 users' first blocks take a second of it), over
/// 2^31 ms (25 days).
const REACTIONS: Clock = Clock {
    per_ms_bits: 12,
    ms_bits: 31,
};
const _: () = assert!(2u64 << (SCHEDULED.per_ms_bits + SCHEDULED.ms_bits) <= REACTION_BIT);
const _: () = assert!(2u64 << (REACTIONS.per_ms_bits + REACTIONS.ms_bits) <= REACTION_BIT);

/// The next numbers after everything an earlier run of this process issued.
static NEXT_SCHEDULED: AtomicU64 = AtomicU64::new(1);
static NEXT_REACTION: AtomicU64 = AtomicU64::new(0);

impl Clock {
    fn first_at(&self, unix_ms: u64) -> u64 {
        (unix_ms & ((1 << self.ms_bits) - 1)) << self.per_ms_bits
    }
}

impl IdStart {
    /// Where a run starting now begins.
    pub fn now() -> IdStart {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        IdStart::at(unix_ms)
    }

    fn at(unix_ms: u64) -> IdStart {
        IdStart {
            scheduled: SCHEDULED
                .first_at(unix_ms)
                .max(NEXT_SCHEDULED.load(Relaxed))
                .max(1),
            reactions: REACTIONS.first_at(unix_ms).max(NEXT_REACTION.load(Relaxed)),
        }
    }

    /// Whether `id` is numbered before this start: a message of an earlier run, which the
    /// target kept and hands over now.
    pub fn precedes(&self, id: u64) -> bool {
        let seq = seq_of(id);
        if seq & REACTION_BIT != 0 {
            seq & !REACTION_BIT < self.reactions
        } else {
            seq < self.scheduled
        }
    }

    /// The key seeded choices about message `id` use (a read, a reply, a retry's wait): its
    /// id as if its run had begun numbering at 1, so the same seed makes the same choices
    /// wherever a run's numbers begin.
    pub fn key_of(&self, id: u64) -> u64 {
        let seq = seq_of(id);
        let from_one = if seq & REACTION_BIT != 0 {
            REACTION_BIT | (seq & !REACTION_BIT).wrapping_sub(self.reactions)
        } else {
            seq.wrapping_sub(self.scheduled).wrapping_add(1)
        };
        compose(from_one, pattern_of(id))
    }

    /// Records how far a run went (the next unissued number of each stream), so the next
    /// run of this process begins after it.
    pub fn note_reached(scheduled: u64, reactions: u64) {
        NEXT_SCHEDULED.fetch_max(scheduled, Relaxed);
        NEXT_REACTION.fetch_max(reactions & !REACTION_BIT, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_millisecond_starts_past_a_million_a_second() {
        let a = SCHEDULED.first_at(1_000);
        let b = SCHEDULED.first_at(2_000);
        assert_eq!(b - a, 1_000 * 1_024);
        // Any clock gives ids a double holds exactly, with room for a long run.
        for unix_ms in [1_796_342_400_000, (1 << 33) - 1, u64::MAX] {
            let s = SCHEDULED.first_at(unix_ms) + 1_000_000_000_000;
            let r = REACTIONS.first_at(unix_ms) + 1_000_000_000_000;
            assert!(compose(s, 255) < 1 << 53);
            assert!(compose(REACTION_BIT | r, 255) < 1 << 53);
        }
    }

    #[test]
    fn an_id_keys_by_its_number_within_its_run_and_tells_an_earlier_runs() {
        let a = IdStart {
            scheduled: 1 << 40,
            reactions: 1 << 41,
        };
        let b = IdStart {
            scheduled: (1 << 40) + 5_000,
            reactions: (1 << 41) + 7,
        };
        // The third scheduled message and the second reply of each run, pattern 4.
        let (a3, b3) = (compose(a.scheduled + 2, 4), compose(b.scheduled + 2, 4));
        let (ar, br) = (
            compose(REACTION_BIT | (a.reactions + 1), 4),
            compose(REACTION_BIT | (b.reactions + 1), 4),
        );
        assert_eq!(a.key_of(a3), compose(3, 4));
        assert_eq!(a.key_of(a3), b.key_of(b3));
        assert_eq!(a.key_of(ar), compose(REACTION_BIT | 1, 4));
        assert_eq!(a.key_of(ar), b.key_of(br));
        assert!(b.precedes(a3) && b.precedes(ar));
        assert!(!b.precedes(b3) && !b.precedes(br));
        assert!(!a.precedes(b3) && !a.precedes(br));
    }

    #[test]
    fn a_run_of_this_process_begins_after_the_last_one() {
        let first = IdStart::at(5);
        IdStart::note_reached(first.scheduled + 10_000_000, first.reactions + 3);
        let second = IdStart::at(5);
        assert!(second.scheduled >= first.scheduled + 10_000_000);
        assert!(second.reactions >= first.reactions + 3);
    }
}

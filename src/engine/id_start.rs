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

use crate::protocol::id::{PATTERN_BITS, REACTION_BIT};
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

/// 1,024 numbers a millisecond (a million messages a second) over 2^35 ms (397 days):
/// a scheduled message's id stays below 2^53, which a target that reads JSON numbers as
/// doubles (JavaScript) holds exactly.
const SCHEDULED: Clock = Clock {
    per_ms_bits: 10,
    ms_bits: 35,
};
/// A closed loop takes its numbers in blocks of 4,096 per user, so the users' stream has
/// room for 524,288 a millisecond, over 2^34 ms (199 days), leaving as many numbers again
/// above the last start before a number would reach `REACTION_BIT` (the stream's ids set
/// bit 62 anyway: no double holds them).
const REACTIONS: Clock = Clock {
    per_ms_bits: 19,
    ms_bits: 34,
};
const _: () = assert!(SCHEDULED.per_ms_bits + SCHEDULED.ms_bits + PATTERN_BITS <= 53);
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
        // Today's clock gives an id a double holds exactly.
        let today = SCHEDULED.first_at(1_796_342_400_000);
        assert!(crate::protocol::id::compose(today + 1_000_000_000, 255) < 1 << 53);
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

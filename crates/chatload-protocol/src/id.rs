//! The message-id layout both sides read: `seq << PATTERN_BITS | pattern`, where a sequence
//! number with `REACTION_BIT` belongs to a user's own reactions (replies) rather than to the
//! schedule. Ids increase per sender within each of the two streams; the reference server's
//! retransmission check compares ids within a stream. Every id stays below 2^53, so a
//! target that reads JSON numbers as doubles (JavaScript) echoes it exactly. Not where ids
//! come from (the schedule and the virtual users issue them, from where a run begins).

/// Bits an id may use: a double holds every integer below 2^53 exactly.
pub const ID_BITS: u32 = 53;
/// Message ids carry their pattern in the low bits, so any id tells its pattern.
pub const PATTERN_BITS: u32 = 8;
pub const MAX_PATTERNS: usize = 1 << PATTERN_BITS;
/// Sequence numbers with this bit are issued by virtual users for their reactions, outside
/// the schedule's own sequence: bit 52 of an id, the ids' second stream. Either stream's
/// numbers stay below it (2^44).
pub const REACTION_BIT: u64 = 1 << (ID_BITS - 1 - PATTERN_BITS);

/// The id of message `seq` of `pattern`.
pub fn compose(seq: u64, pattern: u16) -> u64 {
    (seq << PATTERN_BITS) | pattern as u64
}

pub fn pattern_of(id: u64) -> u16 {
    (id & (MAX_PATTERNS as u64 - 1)) as u16
}

pub fn seq_of(id: u64) -> u64 {
    id >> PATTERN_BITS
}

/// Which of the two streams `id` belongs to: 0 the schedule's, 1 a user's reactions.
pub fn stream(id: u64) -> usize {
    ((id >> (ID_BITS - 1)) & 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_gives_back_its_sequence_pattern_and_stream() {
        let id = compose(12_345, 7);
        assert_eq!((seq_of(id), pattern_of(id), stream(id)), (12_345, 7, 0));
        let reaction = compose(REACTION_BIT | 3, 200);
        assert_eq!(pattern_of(reaction), 200);
        assert_eq!(seq_of(reaction) & !REACTION_BIT, 3);
        assert_eq!(stream(reaction), 1);
        let last = compose(REACTION_BIT | (REACTION_BIT - 1), 255);
        assert!(last < 1 << ID_BITS, "a double holds every id");
        assert_eq!(stream(compose(REACTION_BIT - 1, 255)), 0);
    }
}

//! The message-id layout both sides read: `seq << PATTERN_BITS | pattern`, where a sequence
//! number with `REACTION_BIT` belongs to a user's own reactions (replies) rather than to the
//! schedule. Ids increase per sender within each of the two streams; the reference server's
//! retransmission check compares ids within a stream. Not where ids come from (the schedule
//! and the virtual users issue them).

/// Message ids carry their pattern in the low bits, so any id tells its pattern.
pub const PATTERN_BITS: u32 = 8;
pub const MAX_PATTERNS: usize = 1 << PATTERN_BITS;
/// Sequence numbers with this bit are issued by virtual users for their reactions, outside
/// the schedule's own sequence: bit 62 of an id, the ids' second stream.
pub const REACTION_BIT: u64 = 1 << (62 - PATTERN_BITS);

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
    ((id >> 62) & 1) as usize
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
    }
}

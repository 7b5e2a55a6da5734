//! One machine's share of a run split across N (`--segment i/N`): users and groups are
//! dealt out in turn (user k and group g belong to segment k mod N and g mod N), contacts
//! and group members are drawn inside the same segment, so every conversation and group
//! stays on one machine and its latency is measured on one clock. Owns the partition; the
//! population draws inside it and the engine sends only its own share.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// 0-based, below `count` (Kubernetes' completion index maps to it directly).
    pub index: u32,
    pub count: u32,
}

impl Segment {
    /// The whole run: one segment.
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// "i/N" with 0 <= i < N.
    pub fn parse(text: &str) -> Result<Segment, String> {
        let hint = "write INDEX/COUNT with 0 <= INDEX < COUNT, e.g. --segment 0/4 … 3/4";
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not a segment: {hint}"))?;
        let (Ok(index), Ok(count)) = (i.trim().parse::<u32>(), n.trim().parse::<u32>()) else {
            return Err(format!("`{text}` is not a segment: {hint}"));
        };
        if count == 0 || index >= count {
            return Err(format!("`{text}` is not a segment: {hint}"));
        }
        Ok(Segment { index, count })
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// The segment a user or a group belongs to.
    pub fn of(self, id: u32) -> u32 {
        id % self.count
    }

    pub fn owns(self, id: u32) -> bool {
        self.of(id) == self.index
    }

    /// How many of the ids `0..n` fall in segment `class`.
    pub fn members_of(self, class: u32, n: u32) -> u32 {
        if n <= class {
            0
        } else {
            (n - class).div_ceil(self.count)
        }
    }

    /// The `j`-th id of segment `class`.
    pub fn nth(self, class: u32, j: u32) -> u32 {
        j * self.count + class
    }

    /// This segment's place among the ids of its class (`nth`'s inverse).
    pub fn rank(self, id: u32) -> u32 {
        id / self.count
    }
}

impl Default for Segment {
    fn default() -> Self {
        Segment::WHOLE
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_and_deal_ids_in_turn() {
        let s = Segment::parse("2/4").unwrap();
        assert_eq!((s.index, s.count), (2, 4));
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(Segment::parse(bad).is_err(), "{bad}");
        }
        // 10 ids over 4 segments: 3, 3, 2, 2.
        let sizes: Vec<u32> = (0..4).map(|c| s.members_of(c, 10)).collect();
        assert_eq!(sizes, [3, 3, 2, 2]);
        assert_eq!(sizes.iter().sum::<u32>(), 10);
        assert_eq!(s.nth(2, 1), 6);
        assert!(s.owns(6) && !s.owns(7));
        assert_eq!(s.rank(6), 1);
        assert_eq!(Segment::WHOLE.members_of(0, 10), 10);
    }
}

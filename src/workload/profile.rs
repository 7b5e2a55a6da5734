//! The load profile: which virtual users are connected at which time. Users are ordered;
//! user k is connected while the profile's level × online users exceeds k. Owns that rule and
//! the safety margins around connects and disconnects; not the traffic itself.

use crate::scenario::{Stage, units::Micros};

/// Time a connection is given to come up before traffic involves its user.
pub const CONNECT_MARGIN_US: u64 = 1_000_000;
/// Quiet time before a user's scheduled disconnect, so deliveries to it can land.
pub const DISCONNECT_MARGIN_US: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Profile {
    /// (start µs, end µs, level at start, level at end) per stage.
    segments: Vec<(u64, u64, f64, f64)>,
    users: u32,
    end_us: u64,
    final_level: f64,
}

impl Profile {
    pub fn new(stages: &[Stage], users: u32) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let (mut t, mut level) = (0u64, 0.0);
        for s in stages {
            segments.push((t, t + s.length.0, level, s.to));
            t += s.length.0;
            level = s.to;
        }
        Profile {
            segments,
            users,
            end_us: t,
            final_level: level,
        }
    }

    pub fn users(&self) -> u32 {
        self.users
    }

    /// End of the last stage: the schedule sends nothing after it.
    pub fn end(&self) -> Micros {
        Micros(self.end_us)
    }

    /// Share of users connected at `t_us` (the final level holds after the last stage).
    pub fn level(&self, t_us: u64) -> f64 {
        for &(a, b, la, lb) in &self.segments {
            if t_us < b {
                if t_us < a {
                    return la;
                }
                let f = (t_us - a) as f64 / (b - a).max(1) as f64;
                return la + (lb - la) * f;
            }
        }
        self.final_level
    }

    /// Number of users connected at `t_us`.
    pub fn connected(&self, t_us: u64) -> u32 {
        ((self.level(t_us) * self.users as f64).round() as u32).min(self.users)
    }

    pub fn online(&self, user: u32, t_us: u64) -> bool {
        user < self.connected(t_us)
    }

    /// The first time after `t_us` at which `user` goes online or offline, if it ever does.
    pub fn next_change(&self, user: u32, t_us: u64) -> Option<u64> {
        let now = self.online(user, t_us);
        let n = self.users as f64;
        // online(user) ⇔ round(level·n) > user ⇔ level·n ≥ user + 0.5
        let threshold = (user as f64 + 0.5) / n;
        let mut best: Option<u64> = None;
        for &(a, b, la, lb) in &self.segments {
            if b <= t_us {
                continue;
            }
            let candidate = if la == lb || b == a {
                b
            } else {
                let f = (threshold - la) / (lb - la);
                if !(0.0..=1.0).contains(&f) {
                    continue;
                }
                a + (f * (b - a) as f64).ceil() as u64
            };
            // Step to the first microsecond where the state really differs.
            let start = candidate.max(t_us + 1);
            if let Some(c) = (start..start + 4).find(|&c| self.online(user, c) != now) {
                best = Some(best.map_or(c, |x| x.min(c)));
            }
        }
        best
    }

    /// Online for the whole window around `t_us`, so traffic to or from it is safe to schedule.
    pub fn eligible(&self, user: u32, t_us: u64) -> bool {
        let from = t_us.saturating_sub(CONNECT_MARGIN_US);
        let to = t_us + DISCONNECT_MARGIN_US;
        if !self.online(user, from) || !self.online(user, to) || !self.online(user, t_us) {
            return false;
        }
        // The level is linear between stage boundaries: checking those inside the window suffices.
        self.segments
            .iter()
            .flat_map(|&(a, b, _, _)| [a, b])
            .filter(|&x| x > from && x < to)
            .all(|x| self.online(user, x) && self.online(user, x.saturating_sub(1)))
    }

    /// The most users connected at any time up to each stage end (goose's launch envelope).
    pub fn launch_envelope(&self) -> Vec<(u32, u64)> {
        let mut peak = 0u32;
        self.segments
            .iter()
            .map(|&(a, b, _, lb)| {
                peak = peak.max(((lb * self.users as f64).round() as u32).min(self.users));
                (peak, b - a)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::StageLabel;

    fn stage(label: StageLabel, secs: u64, to: f64) -> Stage {
        Stage {
            label,
            length: Micros(secs * 1_000_000),
            to,
        }
    }

    #[test]
    fn users_connect_in_order_and_leave_in_reverse() {
        let p = Profile::new(
            &[
                stage(StageLabel::Ramp, 10, 1.0),
                stage(StageLabel::Hold, 10, 1.0),
                stage(StageLabel::RampDown, 10, 0.0),
            ],
            100,
        );
        assert_eq!(p.connected(0), 0);
        assert_eq!(p.connected(5_000_000), 50);
        assert_eq!(p.connected(15_000_000), 100);
        assert_eq!(p.connected(25_000_000), 50);
        assert!(p.online(0, 1_000_000) && !p.online(99, 1_000_000));
        assert!(
            !p.eligible(10, 1_100_000),
            "just connected: not yet eligible"
        );
        assert!(p.eligible(10, 3_000_000));
        assert!(!p.eligible(49, 24_500_000), "about to leave: not eligible");
        for user in [0u32, 10, 49, 99] {
            let on = p.next_change(user, 0).unwrap();
            assert!(
                !p.online(user, on - 1) && p.online(user, on),
                "user {user} comes online at {on}"
            );
            let off = p.next_change(user, on).unwrap();
            assert!(
                p.online(user, off - 1) && !p.online(user, off),
                "user {user} leaves at {off}"
            );
            assert_eq!(p.next_change(user, off), None);
        }
        assert_eq!(
            p.launch_envelope(),
            vec![(100, 10_000_000), (100, 10_000_000), (100, 10_000_000)]
        );
    }
}

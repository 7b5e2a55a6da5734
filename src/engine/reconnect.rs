//! When a virtual user tries to connect again: the default backoff after an unexpected loss
//! (full jitter, 100 ms to 5 s), and the reconnect storms of the scenario — which users a
//! storm drops, and the storm's own backoff policy until they are back. Owns timing only.

use crate::scenario::{Backoff, BackoffKind, PatternKind, Scenario, units::Micros};
use std::time::{Duration, Instant};

const DEFAULT: Backoff = Backoff {
    kind: BackoffKind::FullJitter,
    base: Micros(100_000),
    cap: Micros(5_000_000),
    max_attempts: 0,
};

/// A reconnect storm of the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    pub pattern: u16,
    pub at_us: u64,
    pub fraction: f64,
    pub policy: Backoff,
    /// The server drops these users with `goaway` (the client only reacts).
    pub goaway: bool,
}

pub fn storms(s: &Scenario) -> Vec<Storm> {
    let mut v: Vec<Storm> = s
        .patterns
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p.kind {
            PatternKind::ReconnectStorm {
                at,
                fraction,
                policy,
                goaway,
            } => Some(Storm {
                pattern: i as u16,
                at_us: at.0,
                fraction,
                policy,
                goaway,
            }),
            _ => None,
        })
        .collect();
    v.sort_by_key(|s| s.at_us);
    v
}

/// Whether storm `pattern` drops `user` (the same users for the same seed).
pub fn hits(seed: u64, pattern: u16, user: u32, fraction: f64) -> bool {
    crate::protocol::keyed::storm_hits(seed, pattern, user, fraction)
}

struct Active {
    pattern: u16,
    policy: Backoff,
    dropped_at: Instant,
}

/// A connection lost sooner than this after it was made counts as one more failure, not as
/// a fresh start: a server that takes the log-in and closes at once gets backoff that grows,
/// not a reconnect every few milliseconds from every user.
const STABLE: Duration = Duration::from_secs(1);

pub struct Reconnector {
    failures: u32,
    /// Connections in a row that were lost within [`STABLE`] of being made.
    flaps: u32,
    connected_at: Option<Instant>,
    next_attempt: Instant,
    previous: Micros,
    jitter: u64,
    active: Option<Active>,
    next_storm: usize,
    gave_up: bool,
}

/// What a failed attempt leads to.
pub enum AfterFailure {
    Retry,
    /// The storm's `max_attempts` ran out: stay offline (pattern of the storm).
    GiveUp(u16),
}

impl Reconnector {
    pub fn new(user: u32) -> Self {
        Reconnector {
            failures: 0,
            flaps: 0,
            connected_at: None,
            next_attempt: Instant::now(),
            previous: DEFAULT.base,
            jitter: crate::protocol::keyed::mix(user as u64 + 1) | 1,
            active: None,
            next_storm: 0,
            gave_up: false,
        }
    }

    pub fn next_attempt(&self) -> Instant {
        self.next_attempt
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    fn uniform(&mut self) -> f64 {
        // xorshift64: timing jitter only, never part of the seeded schedule.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        (self.jitter >> 11) as f64 / (1u64 << 53) as f64
    }

    fn schedule(&mut self, now: Instant) -> Instant {
        let policy = self.active.as_ref().map_or(DEFAULT, |a| a.policy);
        let u = self.uniform();
        let wait = policy.delay(self.failures + 1, self.previous, u);
        self.previous = wait;
        self.next_attempt = now + Duration::from_micros(wait.0.max(1_000));
        self.next_attempt
    }

    /// The connection was lost unexpectedly (not by a storm).
    pub fn lost(&mut self, now: Instant) {
        let short = self
            .connected_at
            .take()
            .is_some_and(|at| now.duration_since(at) < STABLE);
        self.flaps = if short {
            self.flaps.saturating_add(1)
        } else {
            0
        };
        if !short {
            self.previous = DEFAULT.base;
        }
        self.failures = self.flaps;
        self.schedule(now);
    }

    /// An attempt failed.
    pub fn failed(&mut self, now: Instant) -> AfterFailure {
        self.failures = self.failures.saturating_add(1);
        if let Some(a) = &self.active
            && a.policy.max_attempts > 0
            && self.failures >= a.policy.max_attempts
        {
            let pattern = a.pattern;
            self.active = None;
            self.gave_up = true;
            return AfterFailure::GiveUp(pattern);
        }
        self.schedule(now);
        AfterFailure::Retry
    }

    /// Connected: returns the storm and how long recovery took, if a storm had dropped us.
    pub fn connected(&mut self, now: Instant) -> Option<(u16, Duration)> {
        self.failures = 0;
        self.connected_at = Some(now);
        if self.flaps == 0 {
            self.previous = DEFAULT.base;
        }
        self.active
            .take()
            .map(|a| (a.pattern, now.duration_since(a.dropped_at)))
    }

    /// When the next storm strikes, if one is still to come.
    pub fn next_storm_at(&self, storms: &[Storm]) -> Option<u64> {
        storms.get(self.next_storm).map(|s| s.at_us)
    }

    /// Passes every storm due by `now_us`; returns the one that drops this (connected) user.
    pub fn strike(
        &mut self,
        storms: &[Storm],
        seed: u64,
        user: u32,
        now_us: u64,
        connected: bool,
        now: Instant,
    ) -> Option<u16> {
        let mut hit = None;
        while let Some(s) = storms.get(self.next_storm).filter(|s| s.at_us <= now_us) {
            self.next_storm += 1;
            // A goaway storm is the server's to carry out; the client reacts to `goaway`.
            if !s.goaway && connected && hit.is_none() && hits(seed, s.pattern, user, s.fraction) {
                hit = Some(*s);
            }
        }
        let s = hit?;
        self.dropped(&s, now, Duration::ZERO);
        Some(s.pattern)
    }

    /// Storm `s` dropped this user: come back under its policy, not before `not_before`
    /// from now (a server's `goaway` may ask for a delay).
    pub fn dropped(&mut self, s: &Storm, now: Instant, not_before: Duration) {
        self.active = Some(Active {
            pattern: s.pattern,
            policy: s.policy,
            dropped_at: now,
        });
        self.failures = 0;
        self.previous = s.policy.base;
        let at = self.schedule(now);
        self.next_attempt = at.max(now + not_before);
    }

    /// The goaway storm under way at `now_us` (the latest that has struck), if any.
    pub fn goaway_storm(storms: &[Storm], now_us: u64) -> Option<Storm> {
        storms
            .iter()
            .rfind(|s| s.goaway && s.at_us <= now_us + 1_000_000)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_that_closes_right_after_log_in_gets_growing_backoff() {
        let mut r = super::Reconnector::new(7);
        let mut now = std::time::Instant::now();
        let mut waits = Vec::new();
        for _ in 0..12 {
            r.connected(now);
            now += std::time::Duration::from_millis(20);
            r.lost(now);
            waits.push(r.next_attempt().duration_since(now).as_millis());
            now = r.next_attempt();
        }
        // Full jitter draws below the bound, which doubles from 200 ms to the 5 s cap.
        let late: u128 = waits[8..].iter().sum();
        assert!(late > 4 * 1000, "flapping must back off: {waits:?}");
        let total: u128 = waits.iter().sum();
        assert!(
            total > 8_000,
            "12 flaps take seconds, not milliseconds: {waits:?}"
        );
        // A connection that held is a fresh start again.
        r.connected(now);
        now += std::time::Duration::from_secs(60);
        r.lost(now);
        assert!(r.next_attempt().duration_since(now).as_millis() <= 200);
    }

    use super::*;

    #[test]
    fn storms_hit_the_declared_share_and_policies_keep_their_bounds() {
        let hit = (0..100_000u32).filter(|u| hits(7, 2, *u, 0.3)).count();
        assert!((29_000..31_000).contains(&hit), "{hit}");
        let p = Backoff {
            kind: BackoffKind::FullJitter,
            base: Micros(500_000),
            cap: Micros(30_000_000),
            max_attempts: 0,
        };
        for n in 1..20 {
            for u in [0.0, 0.5, 0.999] {
                let d = p.delay(n, Micros(0), u);
                assert!(d.0 <= 30_000_000);
            }
        }
        let e = Backoff {
            kind: BackoffKind::Exponential,
            ..p
        };
        assert_eq!(e.delay(1, Micros(0), 0.5), Micros(500_000));
        assert_eq!(e.delay(3, Micros(0), 0.5), Micros(2_000_000));
        assert_eq!(e.delay(30, Micros(0), 0.5), Micros(30_000_000));
        let f = Backoff {
            kind: BackoffKind::Fixed,
            ..p
        };
        assert_eq!(f.delay(9, Micros(0), 0.9), Micros(500_000));
        let d = Backoff {
            kind: BackoffKind::DecorrelatedJitter,
            ..p
        };
        let x = d.delay(2, Micros(1_000_000), 1.0);
        assert_eq!(x, Micros(3_000_000));
    }
}

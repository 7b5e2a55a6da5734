//! The business API's limits, as the WhatsApp Cloud API enforces them (docs/workloads.md §1.3):
//! throughput per phone number (a token bucket in messages per second, inbound counted too),
//! the pair rate to one user (one per 6 s, bursts to 45), the unique-recipient cap over a
//! moving 24 hours and the 24-hour customer-service window. Owns the arithmetic; not HTTP.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Limits of every business number on the server (`POST /admin/config` sets them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Messages per second, inbound and outbound together (Meta: 80 default, up to 1,000).
    pub throughput_mps: f64,
    /// Unique recipients of business-initiated messages per `window` (0: unlimited).
    pub messaging_limit: u64,
    /// Length of "24 hours": the customer-service window and the messaging limit's period.
    /// Shorter than a day only in compressed-time scenarios.
    pub window_ms: u64,
    /// One message per this interval to one user, with bursts up to `pair_burst`.
    pub pair_interval_ms: u64,
    pub pair_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            throughput_mps: 80.0,
            messaging_limit: 0,
            window_ms: 24 * 3_600_000,
            pair_interval_ms: 6_000,
            pair_burst: 45,
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(capacity: f64, per_second: f64, now: Instant) -> Self {
        TokenBucket {
            tokens: capacity,
            capacity,
            per_second,
            at: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_second).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a send was refused synchronously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 130429: throughput of the number exceeded.
    Throughput,
    /// 131056: too many messages to one user too fast.
    PairRate,
    /// 131047: a free-form message outside the 24-hour window.
    OutsideWindow,
}

/// One business phone number's limit state.
#[derive(Debug)]
pub struct Account {
    limits: Limits,
    throughput: TokenBucket,
    pairs: FxHashMap<u32, TokenBucket>,
    /// Last message from each user (opens or refreshes the window).
    last_inbound: FxHashMap<u32, Instant>,
    /// Business-initiated recipients in the current period, oldest first.
    recipients: VecDeque<(Instant, u32)>,
    recipient_set: FxHashMap<u32, Instant>,
}

impl Account {
    pub fn new(limits: Limits, now: Instant) -> Self {
        let mps = limits.throughput_mps.max(0.001);
        Account {
            limits,
            // One second of burst: a bucket as deep as its rate.
            throughput: TokenBucket::new(mps.max(1.0), mps, now),
            pairs: FxHashMap::default(),
            last_inbound: FxHashMap::default(),
            recipients: VecDeque::new(),
            recipient_set: FxHashMap::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn window(&self) -> Duration {
        Duration::from_millis(self.limits.window_ms)
    }

    pub fn window_open(&self, user: u32, now: Instant) -> bool {
        self.last_inbound
            .get(&user)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.window())
    }

    /// A user wrote to the business: counts against throughput and opens the window.
    /// Inbound messages are never refused (the bucket may go into debt instead).
    pub fn inbound(&mut self, user: u32, now: Instant) {
        let _ = self.throughput.take(now);
        self.last_inbound.insert(user, now);
    }

    /// Checks an outbound send; `free_form` is false for templates (allowed outside the window).
    pub fn outbound(&mut self, user: u32, free_form: bool, now: Instant) -> Result<(), Refusal> {
        if free_form && !self.window_open(user, now) {
            return Err(Refusal::OutsideWindow);
        }
        let per = Duration::from_millis(self.limits.pair_interval_ms.max(1));
        let burst = self.limits.pair_burst.max(1) as f64;
        let pair = self
            .pairs
            .entry(user)
            .or_insert_with(|| TokenBucket::new(burst, 1.0 / per.as_secs_f64(), now));
        // Check both before taking either, so a refusal costs no quota.
        let mut probe_pair = *pair;
        if !probe_pair.take(now) {
            return Err(Refusal::PairRate);
        }
        if !self.throughput.take(now) {
            return Err(Refusal::Throughput);
        }
        *pair = probe_pair;
        Ok(())
    }

    /// Counts a business-initiated recipient against the messaging limit; false when the
    /// limit is reached (the message then fails asynchronously).
    pub fn reach(&mut self, user: u32, now: Instant) -> bool {
        let window = self.window();
        while let Some(&(at, u)) = self.recipients.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.recipients.pop_front();
            if self.recipient_set.get(&u) == Some(&at) {
                self.recipient_set.remove(&u);
            }
        }
        if self.recipient_set.contains_key(&user) || self.window_open(user, now) {
            return true;
        }
        if self.limits.messaging_limit > 0
            && self.recipient_set.len() as u64 >= self.limits.messaging_limit
        {
            return false;
        }
        self.recipient_set.insert(user, now);
        self.recipients.push_back((now, user));
        true
    }

    pub fn unique_recipients(&self) -> usize {
        self.recipient_set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_bucket_refuses_past_the_tier_and_refills() {
        let t0 = Instant::now();
        let mut a = Account::new(
            Limits {
                throughput_mps: 20.0,
                ..Limits::default()
            },
            t0,
        );
        let ok = (0..100u32)
            .filter(|u| a.outbound(*u, false, t0).is_ok())
            .count();
        assert_eq!(ok, 20, "one second of burst at 20 mps");
        assert_eq!(a.outbound(500, false, t0), Err(Refusal::Throughput));
        let later = t0 + Duration::from_millis(500);
        let ok = (0..100u32)
            .filter(|u| a.outbound(1000 + u, false, later).is_ok())
            .count();
        assert_eq!(ok, 10, "half a second refills ten tokens");
    }

    #[test]
    fn pair_rate_allows_a_burst_of_45_then_one_per_6_seconds() {
        let t0 = Instant::now();
        let mut a = Account::new(
            Limits {
                throughput_mps: 1e9,
                ..Limits::default()
            },
            t0,
        );
        let ok = (0..60).filter(|_| a.outbound(7, false, t0).is_ok()).count();
        assert_eq!(ok, 45);
        assert_eq!(a.outbound(7, false, t0), Err(Refusal::PairRate));
        assert!(
            a.outbound(8, false, t0).is_ok(),
            "other users are unaffected"
        );
        assert!(a.outbound(7, false, t0 + Duration::from_secs(6)).is_ok());
        assert_eq!(
            a.outbound(7, false, t0 + Duration::from_secs(6)),
            Err(Refusal::PairRate)
        );
    }

    #[test]
    fn window_opens_on_inbound_and_closes_after_its_length() {
        let t0 = Instant::now();
        let mut a = Account::new(
            Limits {
                window_ms: 1_000,
                ..Limits::default()
            },
            t0,
        );
        assert_eq!(a.outbound(1, true, t0), Err(Refusal::OutsideWindow));
        a.inbound(1, t0);
        assert!(a.outbound(1, true, t0 + Duration::from_millis(999)).is_ok());
        assert_eq!(
            a.outbound(1, true, t0 + Duration::from_millis(1_000)),
            Err(Refusal::OutsideWindow)
        );
        assert!(
            a.outbound(1, false, t0 + Duration::from_secs(2)).is_ok(),
            "templates need no window"
        );
    }

    #[test]
    fn messaging_limit_counts_unique_recipients_over_the_period() {
        let t0 = Instant::now();
        let mut a = Account::new(
            Limits {
                messaging_limit: 2,
                window_ms: 1_000,
                ..Limits::default()
            },
            t0,
        );
        assert!(a.reach(1, t0) && a.reach(2, t0) && a.reach(1, t0));
        assert!(
            !a.reach(3, t0),
            "a third unique recipient is over the limit"
        );
        assert!(
            a.reach(3, t0 + Duration::from_millis(1_000)),
            "the period rolled"
        );
    }
}

//! The checked scenario the rest of chatload works from: plain values in base units
//! (microseconds, counts, bytes, events per second), nothing left to parse.

use super::distribution::Distribution;
use super::threshold::Threshold;
use super::units::{Micros, Rate};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub source_path: String,
    pub seed: u64,
    pub duration: Micros,
    pub loss_deadline: Micros,
    pub drain: Micros,
    pub consumers: Consumers,
    pub patterns: Vec<Pattern>,
    pub stages: Vec<Stage>,
    pub diurnal: Option<Diurnal>,
    pub target: Target,
    pub thresholds: Vec<Threshold>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Consumers {
    pub users: u64,
    pub online_fraction: f64,
    /// Virtual users that connect: `users × online`, at least 1.
    pub online_users: u32,
    pub contacts: Distribution,
    pub groups: u32,
    pub group_size: Distribution,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pattern {
    pub name: String,
    pub kind: PatternKind,
    pub size: Distribution,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PatternKind {
    DirectChat {
        conversations: Rate,
        messages: Distribution,
        gap: Distribution,
        /// Probability that the other side speaks next.
        reply: f64,
        partner_skew: f64,
    },
    GroupChat {
        rate: Rate,
        sender_skew: f64,
    },
    /// At `at`, a share of the connected users lose their connection at once and come back
    /// under a backoff policy, resuming from their last sequence number.
    ReconnectStorm {
        at: Micros,
        fraction: f64,
        policy: Backoff,
    },
}

/// How a client waits between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub base: Micros,
    pub cap: Micros,
    /// Attempts before giving up (0: never give up).
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// Always `base`: the thundering herd.
    Fixed,
    /// base·2^(n-1), capped, no jitter.
    Exponential,
    /// Uniform in [0, min(cap, base·2^n)].
    FullJitter,
    /// min(cap, uniform[base, 3·previous]).
    DecorrelatedJitter,
}

impl Backoff {
    /// The wait before attempt `n` (1-based); `previous` is the last wait, `u` uniform in [0, 1).
    pub fn delay(&self, n: u32, previous: Micros, u: f64) -> Micros {
        let (base, cap) = (self.base.0 as f64, self.cap.0 as f64);
        let exp = base * 2f64.powi(n.saturating_sub(1).min(40) as i32);
        let us = match self.kind {
            BackoffKind::Fixed => base,
            BackoffKind::Exponential => exp.min(cap),
            BackoffKind::FullJitter => u * (exp * 2.0).min(cap),
            BackoffKind::DecorrelatedJitter => {
                let hi = (previous.0 as f64 * 3.0).max(base);
                (base + u * (hi - base)).min(cap)
            }
        };
        Micros(us.max(0.0) as u64)
    }
}

impl PatternKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            PatternKind::DirectChat { .. } => "direct_chat",
            PatternKind::GroupChat { .. } => "group_chat",
            PatternKind::ReconnectStorm { .. } => "reconnect_storm",
        }
    }
}

/// One stage of the load profile: over `length`, the connected share of the online users
/// moves linearly from where the previous stage left it to `to`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stage {
    pub label: StageLabel,
    pub length: Micros,
    pub to: f64,
    /// Rate multiplier at the end of the stage (linear from the previous stage's).
    pub rate: f64,
    /// For a spike: the multiplier at its middle; it returns to `rate` by the end.
    pub peak: Option<f64>,
}

/// A day's traffic curve, compressed so that one day lasts `day`.
#[derive(Debug, Clone, Serialize)]
pub struct Diurnal {
    pub name: String,
    pub day: Micros,
    /// Multiplier at each hour 0..24, mean 1.
    pub hourly: [f64; 24],
}

impl Diurnal {
    /// Research §5 P4: a consumer day peaking at 21:00 and a workday with peaks at 11:00 and
    /// 14:00, a lunch dip and a 10% night floor (shapes sourced, amplitudes assumptions).
    pub fn named(name: &str, day: Micros) -> Option<Diurnal> {
        let raw: [f64; 24] = match name {
            "consumer_evening" => [
                0.35, 0.22, 0.15, 0.12, 0.12, 0.18, 0.35, 0.6, 0.75, 0.8, 0.85, 0.9, 0.95, 0.9,
                0.85, 0.85, 0.9, 1.0, 1.15, 1.35, 1.6, 1.8, 1.5, 0.8,
            ],
            "workday" => [
                0.1, 0.1, 0.1, 0.1, 0.1, 0.12, 0.2, 0.45, 0.8, 1.1, 1.35, 1.45, 1.1, 1.3, 1.45,
                1.25, 1.0, 0.7, 0.4, 0.25, 0.18, 0.14, 0.12, 0.1,
            ],
            "flat" => [1.0; 24],
            _ => return None,
        };
        let mean = raw.iter().sum::<f64>() / 24.0;
        Some(Diurnal {
            name: name.to_string(),
            day,
            hourly: raw.map(|v| v / mean),
        })
    }

    /// The multiplier at `t_us` into the run (the run starts at midnight).
    pub fn at(&self, t_us: u64) -> f64 {
        let hours = (t_us % self.day.0.max(1)) as f64 / self.day.0.max(1) as f64 * 24.0;
        let i = hours.floor() as usize % 24;
        let f = hours - hours.floor();
        self.hourly[i] * (1.0 - f) + self.hourly[(i + 1) % 24] * f
    }

    pub fn max(&self) -> f64 {
        self.hourly.iter().cloned().fold(0.0, f64::max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageLabel {
    Ramp,
    Hold,
    RampDown,
    Spike,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Target {
    /// `None`: start the embedded reference server.
    pub url: Option<String>,
    pub connect_timeout: Micros,
    pub server: ServerKnobs,
}

/// Knobs of the embedded reference server (also `chatload serve` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerKnobs {
    pub delay: Micros,
    pub drop_every: u64,
    pub duplicate_every: u64,
    pub reorder_every: u64,
}

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
    /// SHA-256 of the scenario's text (hex), so that runs of different scenario content can
    /// be told apart; empty for a scenario built in code.
    pub source_digest: String,
    pub seed: u64,
    pub duration: Micros,
    pub loss_deadline: Micros,
    pub drain: Micros,
    /// What a `loss` rule makes of deliveries nobody could verify.
    pub offline_delivery: OfflineDelivery,
    /// End the run early when a threshold is clearly broken.
    pub abort_on_fail: bool,
    pub consumers: Consumers,
    pub businesses: Businesses,
    pub patterns: Vec<Pattern>,
    pub stages: Vec<Stage>,
    pub diurnal: Option<Diurnal>,
    pub target: Target,
    pub thresholds: Vec<Threshold>,
}

/// Deliveries owed to a recipient who was offline, on a target whose protocol cannot show
/// what it kept for them (no session resume), are `unverified`. By default a `loss` rule
/// fails on them; a scenario may accept them explicitly.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OfflineDelivery {
    /// Unverified deliveries fail a `loss` rule.
    #[default]
    Verify,
    /// Unverified deliveries are accepted: a `loss` rule judges only what could be checked.
    UnverifiedOk,
}

impl OfflineDelivery {
    pub fn name(self) -> &'static str {
        match self {
            OfflineDelivery::Verify => "verify",
            OfflineDelivery::UnverifiedOk => "unverified_ok",
        }
    }
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

/// Business phone numbers and the limits the business API holds them to (docs/workloads.md §1.3).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Businesses {
    pub count: u32,
    /// Throughput tier, messages per second (inbound and outbound together).
    pub throughput_mps: f64,
    /// Unique business-initiated recipients per window (0: unlimited).
    pub messaging_limit: u64,
    /// What "24 hours" lasts in this run (shorter when a day is compressed).
    pub window: Micros,
    pub pair_interval: Micros,
    pub pair_burst: u32,
}

impl Default for Businesses {
    fn default() -> Self {
        Businesses {
            count: 0,
            throughput_mps: 80.0,
            messaging_limit: 0,
            window: Micros(24 * 3_600_000_000),
            pair_interval: Micros(6_000_000),
            pair_burst: 45,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pattern {
    pub name: String,
    pub kind: PatternKind,
    pub size: Distribution,
}

/// What a direct chat message carries: shares of each type and the media sizes.
#[derive(Debug, Clone, Serialize)]
pub struct MediaMix {
    /// Shares of text, image, voice, video and other, summing to 1.
    pub shares: [f64; 5],
    /// Bytes of an image, a voice note, a video and anything else.
    pub bytes: [Distribution; 4],
}

/// How the business client reacts to refusals (docs/workloads.md §1.4), part of each business pattern.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ApiClientPolicy {
    /// On 130429: `true` slows to the tier with a client-side token bucket, `false` only
    /// retries after `retry_base`.
    pub slow_to_tier: bool,
    /// On 131056: retry after 4^x seconds (x = 0, 1, …) when true, else give up.
    pub pair_backoff: bool,
    /// Base of the jittered exponential backoff for 5xx and plain retries.
    pub retry_base: Micros,
    pub max_retries: u32,
    /// A request not answered within this is abandoned and retried (it may have been
    /// accepted: the API has no idempotency key).
    pub timeout: Micros,
}

/// The consumer's side of a business message: reading it and replying.
#[derive(Debug, Clone, Serialize)]
pub struct Reaction {
    pub read: f64,
    pub read_delay: Distribution,
    pub reply: f64,
    pub reply_delay: Distribution,
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
        media: MediaMix,
        /// Probability a delivered message is read, and after how long.
        read: f64,
        read_delay: Distribution,
        /// Probability a text is preceded by a typing indicator (compose ≈ 0.25 s per char).
        typing: f64,
    },
    GroupChat {
        rate: Rate,
        sender_skew: f64,
        mention_all: Option<MentionAll>,
    },
    /// Mostly passive connections: sessions of random length with gaps offline, heartbeats,
    /// and presence updates fanned out to online contacts on every connect and disconnect.
    Presence {
        session: Distribution,
        offline: Distribution,
        heartbeat: Micros,
        updates: bool,
    },
    /// A template campaign to `recipients` consumers at `send_rate` under the number's tier.
    BusinessBroadcast {
        start: Micros,
        recipients: u32,
        send_rate: f64,
        /// Share of marketing templates (the rest are utility).
        marketing: f64,
        reaction: Reaction,
        client: ApiClientPolicy,
    },
    /// Customer-initiated conversations answered by a bot or a human agent in the window.
    SupportConversation {
        conversations: Rate,
        turns: Distribution,
        customer_gap: Distribution,
        bot: f64,
        bot_think: Distribution,
        agent_think: Distribution,
        interactive: f64,
        pick_delay: Distribution,
        /// Share of conversations that get one more reply after the window closed (131047).
        late: f64,
        client: ApiClientPolicy,
    },
    /// Authentication templates at `rate` (spikes come from the load profile).
    OtpBurst { rate: f64, client: ApiClientPolicy },
    /// At `at`, a share of the connected users lose their connection at once and come back
    /// under a backoff policy, resuming from their last sequence number.
    ReconnectStorm {
        at: Micros,
        fraction: f64,
        policy: Backoff,
        /// `false`: the connections are cut without a word (a network or server failure);
        /// `true`: the server sends `goaway` and closes them gracefully (a drain).
        goaway: bool,
    },
    /// The closed model: every online user sends its next message as soon as the last one
    /// is confirmed (after `think`), so the target's speed sets the rate (as wrk and
    /// goose users do); latencies are service times, since nothing is late in a closed loop.
    ClosedLoop { think: Distribution },
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

impl Scenario {
    /// The scenario's closed-loop pattern and its index, if it is a closed model.
    pub fn closed_loop(&self) -> Option<(usize, &Pattern)> {
        self.patterns
            .iter()
            .enumerate()
            .find(|(_, p)| matches!(p.kind, PatternKind::ClosedLoop { .. }))
    }
}

impl Consumers {
    /// The same population at another size: `users` people, the same online share, groups
    /// in the same proportion.
    pub fn resized(&self, users: u64) -> Consumers {
        let scale = users as f64 / self.users.max(1) as f64;
        Consumers {
            users,
            online_users: ((users as f64 * self.online_fraction).round() as u64)
                .clamp(1, u32::MAX as u64 / 2) as u32,
            groups: (self.groups as f64 * scale).round() as u32,
            ..self.clone()
        }
    }
}

impl PatternKind {
    pub fn kind_name(&self) -> &'static str {
        match self {
            PatternKind::DirectChat { .. } => "direct_chat",
            PatternKind::GroupChat { .. } => "group_chat",
            PatternKind::ReconnectStorm { .. } => "reconnect_storm",
            PatternKind::Presence { .. } => "presence",
            PatternKind::BusinessBroadcast { .. } => "business_broadcast",
            PatternKind::SupportConversation { .. } => "support_conversation",
            PatternKind::OtpBurst { .. } => "otp_burst",
            PatternKind::ClosedLoop { .. } => "closed_loop",
        }
    }

    /// Whether the business API sends this pattern's messages.
    pub fn is_business(&self) -> bool {
        matches!(
            self,
            PatternKind::BusinessBroadcast { .. }
                | PatternKind::SupportConversation { .. }
                | PatternKind::OtpBurst { .. }
        )
    }
}

/// One message into a very large group at `at`; a share of its members then open the group
/// and fetch its recent history (the "@everyone" failure mode, docs/workloads.md §5 P2).
#[derive(Debug, Clone, Serialize)]
pub struct MentionAll {
    pub at: Micros,
    /// Members of the storm group (capped at the online users).
    pub members: u32,
    pub open: f64,
    pub open_delay: Distribution,
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

    /// The same curve lived in several time zones: `(UTC offset in hours, share)` pairs. The
    /// run's clock is UTC; a user at offset o is at local hour h + o.
    pub fn across_zones(mut self, zones: &[(f64, f64)]) -> Diurnal {
        let total: f64 = zones.iter().map(|(_, w)| w).sum();
        if zones.is_empty() || total <= 0.0 {
            return self;
        }
        let local = self.clone();
        let mut hourly = [0.0; 24];
        for (h, slot) in hourly.iter_mut().enumerate() {
            *slot = zones
                .iter()
                .map(|(offset, w)| {
                    let at = ((h as f64 + offset).rem_euclid(24.0)) * self.day.0 as f64 / 24.0;
                    w / total * local.at(at as u64)
                })
                .sum();
        }
        self.hourly = hourly;
        self
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
    /// What the target speaks, with its settings.
    pub protocol: super::target::Protocol,
    /// A CA to trust besides the public roots (`ca_file` or `--ca-file`).
    pub ca_file: Option<std::path::PathBuf>,
    /// Where credentials come from (variable names; never the values).
    pub credentials: crate::secrets::CredentialNames,
    pub connect_timeout: Micros,
    /// Local addresses connections come from (empty: the system's choice, or a loopback
    /// pool chosen when one address would run out of ports).
    pub source_addresses: Vec<std::net::IpAddr>,
    pub server: ServerKnobs,
}

/// Knobs of the embedded reference server (also `chatload serve` flags): faults to inject.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServerKnobs {
    /// Added to every delivery (constant).
    pub delay: Micros,
    /// Added to every delivery on top of `delay`, drawn per delivery.
    pub latency: Option<Distribution>,
    pub drop_every: u64,
    pub duplicate_every: u64,
    pub reorder_every: u64,
    /// Every n-th send is taken and delivered but never confirmed (`sent` withheld).
    pub drop_ack_every: u64,
    /// Every send's confirmation is written this long after the send was taken.
    pub ack_delay: Micros,
    /// Every n-th delivery freezes its recipient's connection for `stall`.
    pub stall_every: u64,
    pub stall: Micros,
    /// Every n-th delivery cuts its recipient's connection instead (it is resent on resume).
    pub reset_every: u64,
    /// Every n-th delivery is held back `hold` before it goes out.
    pub hold_every: u64,
    pub hold: Micros,
    /// Deliveries for users who are not connected are discarded rather than kept for their
    /// next connection (a server that loses offline queues; `offline_queue = false`).
    pub discard_offline: bool,
    /// Messages per second the server can take and deliver (0: no limit); past it, messages
    /// queue and wait their turn, as on a saturated server: a known knee for capacity tests.
    pub max_rate: f64,
    pub api: ApiFaults,
}

/// Faults of the business HTTP API, as probabilities per send request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ApiFaults {
    pub seed: u64,
    /// 130429 throughput refusals beyond the real limit.
    pub throttle: f64,
    /// 131056 pair-rate refusals beyond the real limit.
    pub pair_rate: f64,
    /// 131048 spam refusals.
    pub spam: f64,
    /// HTTP 500 (131000).
    pub server_error: f64,
    /// Accepted and delivered, but the response is withheld (the client times out).
    pub timeout: f64,
    /// Accepted, then a `failed` status with 131026.
    pub undeliverable: f64,
    /// Marketing templates accepted, then `failed` with 131049.
    pub marketing_cap: f64,
    /// Webhooks wait a random time up to this before they are sent (out of order).
    pub webhook_reorder: Micros,
}

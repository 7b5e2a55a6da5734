//! Compiling the business side: `[population.businesses]` (numbers and their API limits) and
//! the business patterns `business_broadcast`, `support_conversation` and `otp_burst`, with
//! defaults from docs/workloads.md §5 P6–P8 (assumptions marked).

use super::compile::{Result, issue};
use super::compile_pattern::{choice, lognormal, probability};
use super::distribution::{Distribution, Family};
use super::error::SpannedIssue;
use super::file::{PatternSection, ScenarioFile};
use super::model::*;
use super::units::{Micros, RateBasis};
use toml::Spanned;

pub(super) const BROADCAST_KEYS: &[&str] = &[
    "start",
    "recipients",
    "send_rate",
    "marketing",
    "read",
    "read_delay",
    "reply",
    "reply_delay",
    "size",
    "on_throttle",
    "on_pair_limit",
    "retry_base",
    "max_retries",
    "timeout",
];
pub(super) const SUPPORT_KEYS: &[&str] = &[
    "conversations",
    "turns",
    "customer_gap",
    "bot",
    "bot_think",
    "agent_think",
    "interactive",
    "pick_delay",
    "late",
    "size",
    "on_throttle",
    "on_pair_limit",
    "retry_base",
    "max_retries",
    "timeout",
];
pub(super) const OTP_KEYS: &[&str] = &[
    "rate",
    "size",
    "on_throttle",
    "on_pair_limit",
    "retry_base",
    "max_retries",
    "timeout",
];

fn positive(v: &Option<Spanned<i64>>, key: &str, default: i64, max: i64) -> Result<i64> {
    match v {
        Some(x) if !(1..=max).contains(x.get_ref()) => issue(
            x.span(),
            format!(
                "`{key}` must be between 1 and {max} (found {})",
                x.get_ref()
            ),
        ),
        Some(x) => Ok(*x.get_ref()),
        None => Ok(default),
    }
}

/// `[population.businesses]`; numbers exist only when a business pattern needs them.
pub(super) fn compile_businesses(
    file: &ScenarioFile,
    day: Option<Micros>,
    needed: bool,
) -> Result<Businesses> {
    let mut b = Businesses::default();
    if let Some(d) = day {
        // A compressed day compresses the 24-hour window and the messaging-limit period.
        b.window = d;
    }
    let Some(section) = &file.population.businesses else {
        b.count = u32::from(needed);
        return Ok(b);
    };
    let s = section.get_ref();
    b.count = positive(&s.count, "count", 1, 10_000)? as u32;
    if let Some(t) = &s.throughput {
        if !(t.get_ref().is_finite() && *t.get_ref() > 0.0) {
            return issue(
                t.span(),
                "`throughput` is messages per second, more than 0 (tiers: 20, 80, 1000)",
            );
        }
        b.throughput_mps = *t.get_ref();
    }
    if let Some(m) = &s.messaging_limit {
        if *m.get_ref() < 0 {
            return issue(m.span(), "`messaging_limit` is 0 (unlimited) or a count");
        }
        b.messaging_limit = *m.get_ref() as u64;
    }
    if let Some(w) = s.window {
        if w.0 < 1_000 {
            return issue(section.span(), "`window` must be at least 1ms");
        }
        b.window = w;
    }
    if let Some(p) = s.pair_interval {
        if p.0 == 0 {
            return issue(section.span(), "`pair_interval` must be longer than 0s");
        }
        b.pair_interval = p;
    }
    b.pair_burst = positive(&s.pair_burst, "pair_burst", 45, 1_000_000)? as u32;
    Ok(b)
}

fn client_policy(p: &PatternSection, default_timeout: Micros) -> Result<ApiClientPolicy> {
    let slow_to_tier = choice(
        &p.on_throttle,
        "on_throttle",
        &[("slow", true), ("retry", false)],
        true,
        "use \"slow\" (to the tier) or \"retry\"",
    )?;
    let pair_backoff = choice(
        &p.on_pair_limit,
        "on_pair_limit",
        &[("backoff", true), ("drop", false)],
        true,
        "use \"backoff\" (4^x s) or \"drop\"",
    )?;
    let max_retries = match &p.max_retries {
        Some(m) if !(0..=20).contains(m.get_ref()) => {
            return issue(m.span(), "`max_retries` is between 0 and 20");
        }
        Some(m) => *m.get_ref() as u32,
        None => 5,
    };
    Ok(ApiClientPolicy {
        slow_to_tier,
        pair_backoff,
        // Research §1.4: jittered exponential backoff on 5xx (base an assumption).
        retry_base: p.retry_base.unwrap_or(Micros(250_000)),
        max_retries,
        timeout: p.timeout.unwrap_or(default_timeout),
    })
}

fn total_rate(r: &Option<Spanned<super::units::Rate>>, key: &str) -> Result<Option<f64>> {
    match r {
        Some(x) if x.get_ref().basis != RateBasis::Total => issue(
            x.span(),
            format!("`{key}` is a total rate: write e.g. \"100/s\" (not per user or group)"),
        ),
        Some(x) => Ok(Some(x.get_ref().per_second)),
        None => Ok(None),
    }
}

fn dist(d: &Option<super::distribution::TimeDist>, default: Distribution) -> Distribution {
    d.as_ref().map_or(default, |d| d.0.clone())
}

pub(super) fn compile_business_pattern(
    kind_name: &str,
    p: &PatternSection,
    span: std::ops::Range<usize>,
    consumers: &Consumers,
) -> Result<PatternKind> {
    match kind_name {
        "business_broadcast" => {
            let recipients = match &p.recipients {
                Some(r)
                    if *r.get_ref() < 1 || *r.get_ref() as u64 > consumers.online_users as u64 =>
                {
                    return issue(
                        r.span(),
                        format!(
                            "`recipients` must be between 1 and the {} online users",
                            consumers.online_users
                        ),
                    );
                }
                Some(r) => *r.get_ref() as u32,
                None => consumers.online_users.min(1_000),
            };
            let send_rate = total_rate(&p.send_rate, "send_rate")?.ok_or_else(|| {
                SpannedIssue::new(
                    Some(span.clone()),
                    "a business_broadcast needs `send_rate`, the rate the campaign is offered at, e.g. \"100/s\"",
                )
            })?;
            Ok(PatternKind::BusinessBroadcast {
                start: p.start.unwrap_or_default(),
                recipients,
                send_rate,
                // Research §5 P6: category mix marketing/utility/authentication 60/30/10 (A).
                marketing: probability(&p.marketing, "marketing", 0.6)?,
                reaction: Reaction {
                    // Research §5 P6: read P = 0.5 after LogNormal(15 min, 1.8) (A).
                    read: probability(&p.read, "read", 0.5)?,
                    read_delay: dist(&p.read_delay, lognormal(900e6, 1.8, Some(86_400e6))),
                    // Research §5 P6: reply P = 0.1 after LogNormal(10 min, 1.5) (A).
                    reply: probability(&p.reply, "reply", 0.1)?,
                    reply_delay: dist(&p.reply_delay, lognormal(600e6, 1.5, Some(86_400e6))),
                },
                client: client_policy(p, Micros(10_000_000))?,
            })
        }
        "support_conversation" => {
            let conversations = p.conversations.as_ref().ok_or_else(|| {
                SpannedIssue::new(
                    Some(span.clone()),
                    "a support_conversation needs `conversations`, e.g. \"0.5/h per user\"",
                )
            })?;
            if conversations.get_ref().basis != RateBasis::PerUser {
                return issue(
                    conversations.span(),
                    "`conversations` is counted per user: write e.g. \"0.5/h per user\"",
                );
            }
            Ok(PatternKind::SupportConversation {
                conversations: *conversations.get_ref(),
                // Research §5 P7: Geometric(mean 6) turns (A).
                turns: p.turns.as_ref().map_or(
                    Distribution {
                        family: Family::Geometric { p: 1.0 / 6.0 },
                        min: None,
                        max: Some(50.0),
                    },
                    |d| d.0.clone(),
                ),
                // Assumption: customers think like chat users, LogNormal(15 s, 1.0).
                customer_gap: dist(&p.customer_gap, lognormal(15e6, 1.0, Some(600e6))),
                // Assumption: 70% of conversations are answered by a bot.
                bot: probability(&p.bot, "bot", 0.7)?,
                // Research §5 P7: bot LogNormal(400 ms, 0.5), agent LogNormal(90 s, 1.0) (A).
                bot_think: dist(&p.bot_think, lognormal(400e3, 0.5, Some(30e6))),
                agent_think: dist(&p.agent_think, lognormal(90e6, 1.0, Some(3_600e6))),
                // Research §5 P7: interactive P = 0.3, pick after LogNormal(8 s, 0.8) (A).
                interactive: probability(&p.interactive, "interactive", 0.3)?,
                pick_delay: dist(&p.pick_delay, lognormal(8e6, 0.8, Some(600e6))),
                // Research §5 P7: 2% of late replies to exercise 131047 (A).
                late: probability(&p.late, "late", 0.02)?,
                client: client_policy(p, Micros(10_000_000))?,
            })
        }
        _ => {
            let rate = total_rate(&p.rate, "rate")?.ok_or_else(|| {
                SpannedIssue::new(
                    Some(span.clone()),
                    "an otp_burst needs `rate`, e.g. \"50/s\" (spikes come from [load] stages)",
                )
            })?;
            Ok(PatternKind::OtpBurst {
                rate,
                // Research §5 P8: accept p99 < 300 ms; a short timeout finds duplicates.
                client: client_policy(p, Micros(2_000_000))?,
            })
        }
    }
}

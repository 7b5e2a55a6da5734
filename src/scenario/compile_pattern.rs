//! Compiling one `[[pattern]]` table: which keys each kind takes, their defaults (from the
//! research notes, assumptions marked), and the checks with the span of the value to fix.

use super::compile::{Result, issue};
use super::distribution::{Distribution, Family};
use super::error::SpannedIssue;
use super::file::PatternSection;
use super::model::*;
use super::units::{Micros, RateBasis};
use toml::Spanned;

const DIRECT_KEYS: &[&str] = &[
    "conversations",
    "messages",
    "gap",
    "reply",
    "partner_skew",
    "size",
];
const GROUP_KEYS: &[&str] = &["rate", "sender_skew", "size"];
const STORM_KEYS: &[&str] = &["at", "fraction", "backoff", "base", "cap", "max_attempts"];

fn unit_interval(v: &Option<Spanned<f64>>, key: &str, default: f64) -> Result<f64> {
    match v {
        Some(x) if !(0.0..=1.0).contains(x.get_ref()) => issue(
            x.span(),
            format!("`{key}` is a probability in [0, 1] (found {})", x.get_ref()),
        ),
        Some(x) => Ok(*x.get_ref()),
        None => Ok(default),
    }
}

fn skew(v: &Option<Spanned<f64>>, key: &str, default: f64) -> Result<f64> {
    match v {
        Some(x) if !(x.get_ref().is_finite() && *x.get_ref() >= 0.0) => issue(
            x.span(),
            format!(
                "`{key}` is a Zipf exponent, 0 or more (found {})",
                x.get_ref()
            ),
        ),
        Some(x) => Ok(*x.get_ref()),
        None => Ok(default),
    }
}

pub(super) fn compile_pattern(
    spanned: &Spanned<PatternSection>,
    consumers: &Consumers,
) -> Result<Pattern> {
    let p = spanned.get_ref();
    let kind_name = p.kind.get_ref().as_str();
    let allowed = match kind_name {
        "direct_chat" => DIRECT_KEYS,
        "group_chat" => GROUP_KEYS,
        "reconnect_storm" => STORM_KEYS,
        other => {
            return issue(
                p.kind.span(),
                format!(
                    "unknown pattern kind `{other}`: this version knows direct_chat, group_chat and reconnect_storm"
                ),
            );
        }
    };
    if let Some(bad) = p.present_keys().into_iter().find(|k| !allowed.contains(k)) {
        return issue(
            spanned.span(),
            format!(
                "`{bad}` does not apply to a {kind_name} pattern; it takes {}",
                allowed.join(", ")
            ),
        );
    }
    let size = p
        .size
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or(Distribution {
            // Research §5 P1: text length LogNormal(median 25 chars, sigma 0.9), cap 4096.
            family: Family::LogNormal {
                mu: 25f64.ln(),
                sigma: 0.9,
            },
            min: Some(1.0),
            max: Some(4096.0),
        });
    if size.upper_bound().is_none_or(|m| m > 1_000_000.0) {
        let at = p
            .size
            .as_ref()
            .map(|_| spanned.span())
            .unwrap_or(spanned.span());
        return issue(
            at,
            "`size` needs a `max` of at most 1MB so one message cannot be unbounded, e.g. max = 4096",
        );
    }
    let name = p
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| kind_name.to_string());
    let kind = match kind_name {
        "direct_chat" => {
            let conversations = p.conversations.as_ref().ok_or_else(|| {
                SpannedIssue::new(
                    Some(spanned.span()),
                    "a direct_chat pattern needs `conversations`, e.g. \"1/h per user\"",
                )
            })?;
            if conversations.get_ref().basis != RateBasis::PerUser {
                return issue(
                    conversations.span(),
                    "`conversations` is counted per user: write e.g. \"2/h per user\"",
                );
            }
            if consumers.online_users < 2 {
                return issue(
                    spanned.span(),
                    "direct_chat needs at least two online users",
                );
            }
            PatternKind::DirectChat {
                conversations: *conversations.get_ref(),
                // Research §5 P1: about 7 messages per conversation (MSN 2006).
                messages: p
                    .messages
                    .as_ref()
                    .map(|d| d.0.clone())
                    .unwrap_or(Distribution {
                        family: Family::Geometric { p: 1.0 / 7.0 },
                        min: None,
                        max: Some(200.0),
                    }),
                // Research §5 P1: bimodal gaps, mostly LogNormal(15 s, 1.0) (assumption).
                gap: p.gap.as_ref().map(|d| d.0.clone()).unwrap_or(Distribution {
                    family: Family::LogNormal {
                        mu: 15e6f64.ln(),
                        sigma: 1.0,
                    },
                    min: None,
                    max: Some(600e6),
                }),
                // Research §5 P1: P(same sender continues) = 0.4 (assumption) → reply 0.6.
                reply: unit_interval(&p.reply, "reply", 0.6)?,
                partner_skew: skew(&p.partner_skew, "partner_skew", 1.0)?,
            }
        }
        "reconnect_storm" => compile_storm(p, spanned.span())?,
        _ => {
            let rate = p.rate.as_ref().ok_or_else(|| {
                SpannedIssue::new(
                    Some(spanned.span()),
                    "a group_chat pattern needs `rate`, e.g. \"2/min per group\"",
                )
            })?;
            if rate.get_ref().basis != RateBasis::PerGroup {
                return issue(
                    rate.span(),
                    "`rate` of a group_chat is counted per group: write e.g. \"2/min per group\"",
                );
            }
            if consumers.groups == 0 {
                return issue(
                    spanned.span(),
                    "group_chat needs groups: set `groups` in [population.consumers]",
                );
            }
            PatternKind::GroupChat {
                rate: *rate.get_ref(),
                sender_skew: skew(&p.sender_skew, "sender_skew", 1.0)?,
            }
        }
    };
    Ok(Pattern { name, kind, size })
}

fn compile_storm(p: &PatternSection, span: std::ops::Range<usize>) -> Result<PatternKind> {
    let at = p.at.as_ref().ok_or_else(|| {
        SpannedIssue::new(
            Some(span.clone()),
            "a reconnect_storm needs `at`, the time it strikes, e.g. \"20s\"",
        )
    })?;
    let fraction = match &p.fraction {
        Some(f) if !(*f.get_ref() > 0.0 && *f.get_ref() <= 1.0) => {
            return issue(
                f.span(),
                format!(
                    "`fraction` is the share of connected users dropped, in (0, 1] (found {})",
                    f.get_ref()
                ),
            );
        }
        Some(f) => *f.get_ref(),
        None => 1.0,
    };
    let kind = match p.backoff.as_ref().map(|b| (b.get_ref().as_str(), b.span())) {
        None | Some(("full_jitter", _)) => BackoffKind::FullJitter,
        Some(("fixed", _)) => BackoffKind::Fixed,
        Some(("exponential", _)) => BackoffKind::Exponential,
        Some(("decorrelated_jitter", _)) => BackoffKind::DecorrelatedJitter,
        Some((other, span)) => {
            return issue(
                span,
                format!(
                    "unknown backoff `{other}`: use fixed, exponential, full_jitter or decorrelated_jitter"
                ),
            );
        }
    };
    // Research §2.5: full jitter with base 0.5-1 s and cap 30-60 s is the standard mitigation.
    let base = p.base.unwrap_or(Micros(500_000));
    let cap = p.cap.unwrap_or(Micros(30_000_000));
    if base.0 == 0 || cap < base {
        return issue(
            span,
            "the backoff needs 0 < base <= cap, e.g. base = \"500ms\", cap = \"30s\"",
        );
    }
    let max_attempts = match &p.max_attempts {
        Some(m) if *m.get_ref() < 0 => {
            return issue(
                m.span(),
                "`max_attempts` is 0 (never give up) or a positive count",
            );
        }
        Some(m) => *m.get_ref() as u32,
        None => 0,
    };
    Ok(PatternKind::ReconnectStorm {
        at: *at.get_ref(),
        fraction,
        policy: Backoff {
            kind,
            base,
            cap,
            max_attempts,
        },
    })
}

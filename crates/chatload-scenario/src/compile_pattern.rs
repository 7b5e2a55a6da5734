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
    "media",
    "image_bytes",
    "voice_bytes",
    "video_bytes",
    "other_bytes",
    "read",
    "read_delay",
    "typing",
];
const GROUP_KEYS: &[&str] = &["rate", "sender_skew", "size", "mention_all"];
const STORM_KEYS: &[&str] = &[
    "at",
    "fraction",
    "via",
    "backoff",
    "base",
    "cap",
    "max_attempts",
];
const PRESENCE_KEYS: &[&str] = &["session", "offline", "heartbeat", "updates"];
const CLOSED_KEYS: &[&str] = &["think", "size"];

/// LogNormal with the given median (in base units) and sigma, optionally capped.
pub(super) fn lognormal(median: f64, sigma: f64, max: Option<f64>) -> Distribution {
    Distribution {
        family: Family::LogNormal {
            mu: median.ln(),
            sigma,
        },
        min: None,
        max,
    }
}

fn mixture(parts: Vec<(f64, Distribution)>) -> Distribution {
    Distribution {
        family: Family::Mixture { parts },
        min: None,
        max: None,
    }
}

/// One of a few named choices (`options`), `default` when the key is absent; anything else
/// is refused with `hint` saying what to write.
pub(super) fn choice<T: Copy>(
    v: &Option<Spanned<String>>,
    key: &str,
    options: &[(&str, T)],
    default: T,
    hint: &str,
) -> Result<T> {
    let Some(v) = v else { return Ok(default) };
    match options.iter().find(|(name, _)| name == v.get_ref()) {
        Some((_, value)) => Ok(*value),
        None => issue(
            v.span(),
            format!("unknown `{key}` `{}`: {hint}", v.get_ref()),
        ),
    }
}

pub(super) fn probability(v: &Option<Spanned<f64>>, key: &str, default: f64) -> Result<f64> {
    unit_interval(v, key, default)
}

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
    use super::compile_business::{BROADCAST_KEYS, OTP_KEYS, SUPPORT_KEYS};
    let p = spanned.get_ref();
    let kind_name = p.kind.get_ref().as_str();
    let allowed = match kind_name {
        "direct_chat" => DIRECT_KEYS,
        "group_chat" => GROUP_KEYS,
        "reconnect_storm" => STORM_KEYS,
        "presence" => PRESENCE_KEYS,
        "business_broadcast" => BROADCAST_KEYS,
        "support_conversation" => SUPPORT_KEYS,
        "otp_burst" => OTP_KEYS,
        "closed_loop" => CLOSED_KEYS,
        other => {
            return issue(
                p.kind.span(),
                format!(
                    "unknown pattern kind `{other}`: use direct_chat, group_chat, presence, reconnect_storm, business_broadcast, support_conversation, otp_burst or closed_loop"
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
                media: compile_media(p)?,
                // Research §5 P1: read P = 0.85 (A); delay half within a minute (A).
                read: unit_interval(&p.read, "read", 0.85)?,
                read_delay: p.read_delay.as_ref().map_or_else(
                    || {
                        mixture(vec![
                            (0.5, lognormal(10e6, 1.0, None)),
                            (0.5, lognormal(1_200e6, 1.5, Some(86_400e6))),
                        ])
                    },
                    |d| d.0.clone(),
                ),
                // Research §5 P1: typing before a text with P = 0.7 (A).
                typing: unit_interval(&p.typing, "typing", 0.7)?,
            }
        }
        "reconnect_storm" => compile_storm(p, spanned.span())?,
        "closed_loop" => PatternKind::ClosedLoop {
            think: p.think.as_ref().map_or(
                Distribution {
                    family: Family::Constant { value: 0.0 },
                    min: None,
                    max: None,
                },
                |d| d.0.clone(),
            ),
        },
        "presence" => PatternKind::Presence {
            // Research §5 P3: sessions LogNormal(5 min, 1.5), gaps Exp(mean 10 min) (A).
            session: p
                .session
                .as_ref()
                .map_or_else(|| lognormal(300e6, 1.5, Some(86_400e6)), |d| d.0.clone()),
            offline: p.offline.as_ref().map_or(
                Distribution {
                    family: Family::Exponential { mean: 600e6 },
                    min: None,
                    max: Some(86_400e6),
                },
                |d| d.0.clone(),
            ),
            // Research §5 P3: WebSocket apps heartbeat every 30 s (A).
            heartbeat: match p.heartbeat {
                Some(h) if h.0 < 100_000 => {
                    return issue(spanned.span(), "`heartbeat` must be at least 100ms");
                }
                Some(h) => h,
                None => Micros(30_000_000),
            },
            updates: p.updates.unwrap_or(true),
        },
        "business_broadcast" | "support_conversation" | "otp_burst" => {
            super::compile_business::compile_business_pattern(
                kind_name,
                p,
                spanned.span(),
                consumers,
            )?
        }
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
                mention_all: match &p.mention_all {
                    None => None,
                    Some(m) => {
                        if !(0.0..=1.0).contains(&m.open.unwrap_or(0.05)) {
                            return issue(
                                spanned.span(),
                                "`mention_all.open` is a probability in [0, 1]",
                            );
                        }
                        Some(MentionAll {
                            at: m.at,
                            members: m
                                .members
                                .unwrap_or(consumers.online_users)
                                .clamp(2, consumers.online_users.max(2)),
                            // Research §5 P2: 5% open within Exp(mean 20 s) (A).
                            open: m.open.unwrap_or(0.05),
                            open_delay: m.open_delay.as_ref().map_or(
                                Distribution {
                                    family: Family::Exponential { mean: 20e6 },
                                    min: None,
                                    max: Some(600e6),
                                },
                                |d| d.0.clone(),
                            ),
                        })
                    }
                },
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
    let goaway = choice(
        &p.via,
        "via",
        &[("cut", false), ("goaway", true)],
        false,
        "use \"cut\" (a failure) or \"goaway\" (the server drains)",
    )?;
    Ok(PatternKind::ReconnectStorm {
        goaway,
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

/// Research §5 P1: text 82%, image 8%, voice 7%, video 2%, other 1% (WhatsApp ratios); image
/// LogNormal(120 KB, 0.6), voice 12 s × 2 KB/s, video LogNormal(2 MB, 1.0) capped at 16 MB (A).
fn compile_media(p: &PatternSection) -> Result<MediaMix> {
    let mut shares = [0.82, 0.08, 0.07, 0.02, 0.01];
    if let Some(m) = &p.media {
        shares = [0.0; 5];
        for (k, v) in m.get_ref() {
            let i = match k.as_str() {
                "text" => 0,
                "image" => 1,
                "voice" => 2,
                "video" => 3,
                "other" => 4,
                other => {
                    return issue(
                        m.span(),
                        format!(
                            "unknown media type `{other}`: use text, image, voice, video or other"
                        ),
                    );
                }
            };
            if !(v.is_finite() && *v >= 0.0) {
                return issue(m.span(), format!("the share of `{k}` must be 0 or more"));
            }
            shares[i] = *v;
        }
        let total: f64 = shares.iter().sum();
        if (total - 1.0).abs() > 1e-6 {
            return issue(
                m.span(),
                format!("the media shares must add up to 1 (they add up to {total})"),
            );
        }
    }
    let pick = |d: &Option<super::distribution::SizeDist>, default: Distribution| {
        d.as_ref().map_or(default, |d| d.0.clone())
    };
    Ok(MediaMix {
        shares,
        bytes: [
            pick(&p.image_bytes, lognormal(120e3, 0.6, Some(16e6))),
            pick(&p.voice_bytes, lognormal(24e3, 0.8, Some(16e6))),
            pick(&p.video_bytes, lognormal(2e6, 1.0, Some(16e6))),
            pick(&p.other_bytes, lognormal(100e3, 1.0, Some(100e6))),
        ],
    })
}

//! Cross-field checks and defaults: turns the written file into a [`Scenario`]. Every refusal
//! carries the span of the value to fix.

use super::distribution::{Distribution, Family};
use super::error::SpannedIssue;
use super::file::{PatternSection, ScenarioFile, StageSection};
use super::model::*;
use super::model::{Backoff, BackoffKind, Diurnal};
use super::threshold;
use super::units::{Micros, RateBasis};
use std::path::Path;
use toml::Spanned;

type Result<T> = std::result::Result<T, SpannedIssue>;

fn issue<T>(span: std::ops::Range<usize>, message: impl Into<String>) -> Result<T> {
    Err(SpannedIssue::new(Some(span), message))
}

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

pub fn compile(file: ScenarioFile, path: &Path) -> Result<Scenario> {
    let s = &file.scenario;
    let name = s.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return issue(
            s.name.span(),
            "`name` must be non-empty and use only letters, digits, '-', '_' and '.' (it names the report folder)",
        );
    }
    let consumers = compile_consumers(&file)?;
    let (stages, duration) = compile_stages(&file)?;
    let diurnal = compile_diurnal(&file, duration)?;
    let loss_deadline = match &s.loss_deadline {
        Some(d) if d.get_ref().0 == 0 => {
            return issue(d.span(), "`loss_deadline` must be longer than 0s");
        }
        Some(d) => *d.get_ref(),
        None => Micros(5_000_000),
    };
    let drain = s.drain.unwrap_or(loss_deadline);

    let mut patterns = Vec::new();
    for spanned in &file.patterns {
        let p = compile_pattern(spanned, &consumers)?;
        if patterns.iter().any(|q: &Pattern| q.name == p.name) {
            return issue(
                spanned.span(),
                format!(
                    "two patterns are named `{}`: give each a distinct `name`",
                    p.name
                ),
            );
        }
        patterns.push(p);
    }
    if patterns.is_empty() {
        return Err(SpannedIssue::new(
            None,
            "the scenario has no [[pattern]]: add at least one, e.g. kind = \"direct_chat\"",
        ));
    }

    let target = compile_target(&file)?;
    let names: Vec<String> = patterns.iter().map(|p| p.name.clone()).collect();
    let mut thresholds = Vec::new();
    for (key, value) in &file.thresholds {
        match threshold::parse(key.get_ref(), value.get_ref(), &names) {
            Ok(t) => thresholds.push(t),
            Err(message) => {
                let span = if message.starts_with('`') && message.contains("condition")
                    || message.contains("limit")
                    || message.contains("percentage")
                    || message.contains("count:")
                {
                    value.span()
                } else {
                    key.span()
                };
                return issue(span, message);
            }
        }
    }

    Ok(Scenario {
        name,
        description: s.description.clone(),
        source_path: path.display().to_string(),
        seed: s.seed,
        duration,
        loss_deadline,
        drain,
        consumers,
        patterns,
        stages,
        diurnal,
        target,
        thresholds,
    })
}

fn compile_consumers(file: &ScenarioFile) -> Result<Consumers> {
    let c = file.population.consumers.get_ref();
    let users = *c.users.get_ref();
    if users < 1 {
        return issue(
            c.users.span(),
            format!("`users` must be at least 1 (found {users})"),
        );
    }
    if users > 100_000_000 {
        return issue(
            c.users.span(),
            "`users` above 100,000,000 cannot be simulated by one process; use `chatload plan` for larger populations",
        );
    }
    let online_fraction = match &c.online {
        Some(o) if !(0.0..=1.0).contains(o.get_ref()) || *o.get_ref() == 0.0 => {
            return issue(
                o.span(),
                format!(
                    "`online` is the share of users connected, in (0, 1] (found {})",
                    o.get_ref()
                ),
            );
        }
        Some(o) => *o.get_ref(),
        None => 1.0,
    };
    let online_users = ((users as f64 * online_fraction).round() as u64).max(1);
    if online_users > u32::MAX as u64 / 2 {
        return issue(c.users.span(), "too many online users for one process");
    }
    let groups = match &c.groups {
        Some(g) if *g.get_ref() < 0 => return issue(g.span(), "`groups` must be 0 or more"),
        Some(g) => *g.get_ref() as u32,
        None => 0,
    };
    let contacts = c
        .contacts
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| Distribution {
            // Research §5 P1: contacts per user LogNormal(median 20, sigma 1.0), capped (assumption).
            family: Family::LogNormal {
                mu: 20f64.ln(),
                sigma: 1.0,
            },
            min: Some(1.0),
            max: Some(500.0),
        });
    let group_size = c
        .group_size
        .as_ref()
        .map(|d| d.0.clone())
        .unwrap_or_else(|| Distribution {
            // Research §5 P2: Pareto(xm 2, alpha 1.161) capped at WhatsApp's 1,024.
            family: Family::Pareto {
                scale: 2.0,
                shape: 1.161,
            },
            min: Some(2.0),
            max: Some(1024.0),
        });
    Ok(Consumers {
        users: users as u64,
        online_fraction,
        online_users: online_users as u32,
        contacts,
        groups,
        group_size,
    })
}

fn compile_stages(file: &ScenarioFile) -> Result<(Vec<Stage>, Micros)> {
    let declared = file.scenario.duration.as_ref();
    let Some(load) = &file.load else {
        let Some(d) = declared else {
            return Err(SpannedIssue::new(
                None,
                "the scenario needs a length: set `duration` in [scenario] or `stages` in [load]",
            ));
        };
        let total = *d.get_ref();
        if total.0 < 1_000_000 {
            return issue(d.span(), "`duration` must be at least 1s");
        }
        // Without [load]: connect everyone over the first tenth (at most 10 s), then hold.
        let ramp = Micros((total.0 / 10).min(10_000_000));
        return Ok((
            vec![
                Stage {
                    label: StageLabel::Ramp,
                    length: ramp,
                    to: 1.0,
                    rate: 1.0,
                    peak: None,
                },
                Stage {
                    label: StageLabel::Hold,
                    length: Micros(total.0 - ramp.0),
                    to: 1.0,
                    rate: 1.0,
                    peak: None,
                },
            ],
            total,
        ));
    };
    let mut stages = Vec::new();
    let (mut level, mut rate) = (0.0, 1.0);
    for spanned in load.stages.get_ref() {
        let stage = compile_stage(spanned.get_ref(), level, rate)
            .map_err(|m| SpannedIssue::new(Some(spanned.span()), m))?;
        level = stage.to;
        rate = stage.rate;
        stages.push(stage);
    }
    if stages.is_empty() {
        return issue(
            load.stages.span(),
            "`stages` is empty: add e.g. { ramp = \"10s\" }, { hold = \"1m\" }",
        );
    }
    let total = Micros(stages.iter().map(|s| s.length.0).sum());
    if let Some(d) = declared
        && d.get_ref().0 != total.0
    {
        {
            return issue(
                d.span(),
                format!(
                    "`duration` is {}s but the stages in [load] add up to {}s: make them agree, or drop `duration`",
                    d.get_ref().as_secs_f64(),
                    total.as_secs_f64()
                ),
            );
        }
    }
    if total.0 < 1_000_000 {
        return issue(
            load.stages.span(),
            "the stages must last at least 1s in all",
        );
    }
    if stages.iter().all(|s| s.to == 0.0) {
        return issue(
            load.stages.span(),
            "no stage connects anyone: start with a ramp, e.g. { ramp = \"10s\" }",
        );
    }
    Ok((stages, total))
}

fn compile_stage(s: &StageSection, level: f64, rate: f64) -> std::result::Result<Stage, String> {
    let chosen = [
        s.ramp.map(|d| (StageLabel::Ramp, d)),
        s.hold.map(|d| (StageLabel::Hold, d)),
        s.ramp_down.map(|d| (StageLabel::RampDown, d)),
        s.spike.map(|d| (StageLabel::Spike, d)),
    ];
    let set: Vec<_> = chosen.iter().flatten().collect();
    let &&(label, length) = match set.as_slice() {
        [one] => one,
        [] => return Err(
            "a stage needs one of `ramp`, `hold`, `ramp_down` or `spike`, e.g. { ramp = \"30s\" }"
                .into(),
        ),
        _ => return Err("a stage takes only one of `ramp`, `hold`, `ramp_down` or `spike`".into()),
    };
    let to = match (label, s.to) {
        (StageLabel::Hold | StageLabel::Spike, Some(_)) => {
            return Err(
                "a hold or spike keeps the connected share of the stage before it: drop `to`"
                    .into(),
            );
        }
        (StageLabel::Hold | StageLabel::Spike, None) => level,
        (StageLabel::Ramp, t) => t.unwrap_or(1.0),
        (StageLabel::RampDown, t) => t.unwrap_or(0.0),
    };
    if !(0.0..=1.0).contains(&to) {
        return Err(format!(
            "`to` is a share of the online users, in [0, 1] (found {to})"
        ));
    }
    if label == StageLabel::Ramp && to < level {
        return Err(format!(
            "a ramp goes up (from {level} to {to}): use ramp_down to go down"
        ));
    }
    if label == StageLabel::RampDown && to > level {
        return Err(format!(
            "a ramp_down goes down (from {level} to {to}): use ramp to go up"
        ));
    }
    if let Some(r) = s.rate
        && !(r.is_finite() && (0.0..=1000.0).contains(&r))
    {
        return Err(format!(
            "`rate` multiplies the patterns' rates and must be in [0, 1000] (found {r})"
        ));
    }
    let (end_rate, peak) = match label {
        StageLabel::Spike => {
            let Some(p) = s.rate else {
                return Err(
                    "a spike needs `rate`, its peak multiplier, e.g. { spike = \"30s\", rate = 8 }"
                        .into(),
                );
            };
            (rate, Some(p))
        }
        _ => (s.rate.unwrap_or(rate), None),
    };
    Ok(Stage {
        label,
        length,
        to,
        rate: end_rate,
        peak,
    })
}

fn compile_diurnal(file: &ScenarioFile, duration: Micros) -> Result<Option<Diurnal>> {
    let Some(load) = &file.load else {
        return Ok(None);
    };
    let Some(name) = &load.diurnal else {
        if load.day.is_some() {
            return Err(SpannedIssue::new(
                None,
                "`day` sets the length of a `diurnal` day: add e.g. diurnal = \"consumer_evening\"",
            ));
        }
        return Ok(None);
    };
    let day = load.day.unwrap_or(duration);
    if day.0 < 24_000 {
        return issue(
            name.span(),
            "`day` must be at least 24ms (a millisecond per hour)",
        );
    }
    Diurnal::named(name.get_ref(), day)
        .map(Some)
        .ok_or_else(|| {
            SpannedIssue::new(
                Some(name.span()),
                format!(
                    "unknown diurnal curve `{}`: use consumer_evening, workday or flat",
                    name.get_ref()
                ),
            )
        })
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

fn compile_pattern(spanned: &Spanned<PatternSection>, consumers: &Consumers) -> Result<Pattern> {
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

fn positive_every(v: &Option<Spanned<i64>>, key: &str) -> Result<u64> {
    match v {
        Some(x) if *x.get_ref() < 0 => issue(
            x.span(),
            format!("`{key}` must be 0 (off) or a positive count"),
        ),
        Some(x) => Ok(*x.get_ref() as u64),
        None => Ok(0),
    }
}

fn compile_target(file: &ScenarioFile) -> Result<Target> {
    let Some(t) = &file.target else {
        return Ok(Target {
            url: None,
            connect_timeout: Micros(5_000_000),
            server: ServerKnobs::default(),
        });
    };
    let url = match &t.url {
        Some(u) => {
            let text = u.get_ref().trim();
            if !(text.starts_with("ws://") || text.starts_with("wss://")) {
                return issue(
                    u.span(),
                    format!(
                        "`{text}` is not a WebSocket URL: write e.g. \"ws://127.0.0.1:7070/v1/ws\""
                    ),
                );
            }
            Some(text.to_string())
        }
        None => None,
    };
    let server = ServerKnobs {
        delay: t.delay.unwrap_or_default(),
        drop_every: positive_every(&t.drop_every, "drop_every")?,
        duplicate_every: positive_every(&t.duplicate_every, "duplicate_every")?,
        reorder_every: positive_every(&t.reorder_every, "reorder_every")?,
    };
    Ok(Target {
        url,
        connect_timeout: t.connect_timeout.unwrap_or(Micros(5_000_000)),
        server,
    })
}

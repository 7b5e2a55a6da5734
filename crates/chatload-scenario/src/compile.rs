//! Cross-field checks and defaults: turns the written file into a [`Scenario`]. Every refusal
//! carries the span of the value to fix.

use super::compile_pattern::compile_pattern;
use super::distribution::{Distribution, Family};
use super::error::SpannedIssue;
use super::file::{ScenarioFile, StageSection};
use super::model::*;
use super::threshold;
use super::units::Micros;
use std::path::Path;
use toml::Spanned;

pub(super) type Result<T> = std::result::Result<T, SpannedIssue>;

pub(super) fn issue<T>(span: std::ops::Range<usize>, message: impl Into<String>) -> Result<T> {
    Err(SpannedIssue::new(Some(span), message))
}

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
    let diurnal = super::timeline::compile_diurnal(&file, duration)?;
    let loss_deadline = match &s.loss_deadline {
        Some(d) if d.get_ref().0 == 0 => {
            return issue(d.span(), "`loss_deadline` must be longer than 0s");
        }
        Some(d) => *d.get_ref(),
        None => Micros(5_000_000),
    };
    let drain = s.drain.unwrap_or(loss_deadline);

    let mut patterns = Vec::new();
    for (n, spanned) in file.patterns.iter().enumerate() {
        if n == crate::protocol::id::MAX_PATTERNS {
            // Every message id carries its pattern's number in 8 bits.
            return issue(
                spanned.span(),
                format!(
                    "a scenario has at most {} [[pattern]]s: merge some of them",
                    crate::protocol::id::MAX_PATTERNS
                ),
            );
        }
        let p = compile_pattern(spanned, &consumers)?;
        super::timeline::check_moment(&p.kind, &p.name, spanned, duration)?;
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

    let needs_business = patterns.iter().any(|p| p.kind.is_business());
    let businesses = super::compile_business::compile_businesses(
        &file,
        diurnal.as_ref().map(|d| d.day),
        needs_business,
    )?;
    if needs_business && businesses.count == 0 {
        return Err(SpannedIssue::new(
            None,
            "business patterns need at least one business number: set count >= 1 in [population.businesses]",
        ));
    }
    let target = compile_target(&file)?;
    if needs_business && !matches!(target.protocol, super::target::Protocol::Chatload) {
        let span = file
            .target
            .as_ref()
            .and_then(|t| t.protocol.as_ref().or(t.url.as_ref()))
            .map(|p| p.span());
        return Err(SpannedIssue::new(
            span,
            format!(
                "business patterns drive the business API of chatload's reference server, which the \"{}\" protocol does not reach: run them against the embedded server or `chatload serve`",
                target.protocol.name()
            ),
        ));
    }
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
        source_digest: String::new(),
        seed: s.seed,
        duration,
        loss_deadline,
        drain,
        offline_delivery: s.offline_delivery.unwrap_or_default(),
        abort_on_fail: s.abort_on_fail.unwrap_or(false),
        consumers,
        businesses,
        patterns,
        stages,
        diurnal,
        target,
        thresholds,
    })
}

/// Groups a population may have per person (see `compile_consumers`).
const MAX_GROUPS_PER_USER: u64 = 10;

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
        // Each group's member list is held in memory (and every member's list of groups):
        // past ten groups per person a population is no longer a chat population, and a
        // typo such as 100_000_000 would take gigabytes before anything is sent.
        Some(g) if *g.get_ref() as u64 > users as u64 * MAX_GROUPS_PER_USER => {
            return issue(
                g.span(),
                format!(
                    "`groups` = {} for {users} users is more than {MAX_GROUPS_PER_USER} groups per person, and their member lists would not fit in memory; use at most {}",
                    g.get_ref(),
                    users as u64 * MAX_GROUPS_PER_USER
                ),
            );
        }
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
    // What the population will hold in memory, estimated before anything is built: each
    // person's state and contact list (both ends of every edge) and each group's members
    // (and each member's list of groups). An absurd size is refused here, at the key that
    // makes it, rather than found by the allocator during the run.
    let mean = |d: &Distribution| {
        d.capped_mean_estimate()
            .or_else(|| d.upper_bound())
            .unwrap_or(0.0)
    };
    let contact_bytes = users as f64 * mean(&contacts) * 2.0 * 4.0;
    let group_bytes = groups as f64 * (64.0 + mean(&group_size) * 2.0 * 4.0);
    let estimate = users as f64 * PER_USER_BYTES + contact_bytes + group_bytes;
    if estimate > MAX_POPULATION_BYTES {
        let gib = |b: f64| b / (1u64 << 30) as f64;
        let (span, key) =
            if contact_bytes >= group_bytes && contact_bytes > users as f64 * PER_USER_BYTES {
                (c.users.span(), "contacts")
            } else if group_bytes > users as f64 * PER_USER_BYTES {
                (
                    c.groups.as_ref().map_or(c.users.span(), |g| g.span()),
                    "groups",
                )
            } else {
                (c.users.span(), "users")
            };
        return issue(
            span,
            format!(
                "this population would need about {:.1} GiB of memory ({users} people; `{key}` takes the most), more than the {:.0} GiB one process is allowed; use fewer people or contacts, or `chatload plan` for the figures of a population this large",
                gib(estimate),
                gib(MAX_POPULATION_BYTES)
            ),
        );
    }
    Ok(Consumers {
        users: users as u64,
        online_fraction,
        online_users: online_users as u32,
        contacts,
        groups,
        group_size,
    })
}

/// A person's own state in a run besides contacts and groups (inbox, connection state,
/// schedule cursors), an upper estimate.
const PER_USER_BYTES: f64 = 256.0;
/// The largest population estimate one process takes.
const MAX_POPULATION_BYTES: f64 = 16.0 * (1u64 << 30) as f64;

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

/// Server knobs from the body of a `[target]` table (what `chatload serve` flags become).
pub fn server_knobs(table: &str, seed: u64) -> std::result::Result<ServerKnobs, String> {
    let t: super::file::TargetSection =
        toml::from_str(table).map_err(|e| e.message().to_string())?;
    target_section(&t, seed)
        .map(|t| t.server)
        .map_err(|e| e.message)
}

fn compile_target(file: &ScenarioFile) -> Result<Target> {
    match &file.target {
        Some(t) => target_section(t, file.scenario.seed),
        None => target_section(&super::file::TargetSection::default(), file.scenario.seed),
    }
}

fn target_section(t: &super::file::TargetSection, seed: u64) -> Result<Target> {
    let transport = super::target::compile(super::target::Sections {
        url: t.url.as_ref(),
        protocol: t.protocol.as_ref(),
        ca_file: t.ca_file.as_ref(),
        auth: t.auth.as_ref(),
        mqtt: t.mqtt.as_ref(),
        gateway: t.gateway.as_ref(),
        http: t.http.as_ref(),
        xmpp: t.xmpp.as_ref(),
        span: 0..0,
    })?;
    let url = t.url.as_ref().map(|u| u.get_ref().trim().to_string());
    let mut api = ApiFaults {
        seed,
        webhook_reorder: t.webhook_reorder.unwrap_or_default(),
        ..ApiFaults::default()
    };
    if let Some(errors) = &t.errors {
        let mut refusals = 0.0;
        for (code, p) in errors.get_ref() {
            if !(0.0..=1.0).contains(p) {
                return issue(
                    errors.span(),
                    format!("the rate of `{code}` is a probability in [0, 1] (found {p})"),
                );
            }
            let slot = match code.as_str() {
                "130429" => &mut api.throttle,
                "131056" => &mut api.pair_rate,
                "131048" => &mut api.spam,
                "500" => &mut api.server_error,
                "timeout" => &mut api.timeout,
                "131026" => &mut api.undeliverable,
                "131049" => &mut api.marketing_cap,
                other => {
                    return issue(
                        errors.span(),
                        format!(
                            "unknown error `{other}`: use 130429, 131056, 131048, 500, timeout, 131026 or 131049"
                        ),
                    );
                }
            };
            *slot = *p;
            if matches!(code.as_str(), "130429" | "131056" | "131048" | "500") {
                refusals += p;
            }
        }
        if refusals > 1.0 || api.undeliverable + api.marketing_cap > 1.0 {
            return issue(errors.span(), "the error rates add up to more than 1");
        }
    }
    let server = ServerKnobs {
        delay: t.delay.unwrap_or_default(),
        latency: t.latency.as_ref().map(|d| d.0.clone()),
        drop_every: positive_every(&t.drop_every, "drop_every")?,
        duplicate_every: positive_every(&t.duplicate_every, "duplicate_every")?,
        reorder_every: positive_every(&t.reorder_every, "reorder_every")?,
        drop_ack_every: positive_every(&t.drop_ack_every, "drop_ack_every")?,
        ack_delay: t.ack_delay.unwrap_or_default(),
        stall_every: positive_every(&t.stall_every, "stall_every")?,
        stall: t.stall.unwrap_or(Micros(1_000_000)),
        reset_every: positive_every(&t.reset_every, "reset_every")?,
        hold_every: positive_every(&t.hold_every, "hold_every")?,
        hold: t.hold.unwrap_or(Micros(10_000_000)),
        discard_offline: !t.offline_queue.unwrap_or(true),
        max_rate: match &t.max_rate {
            Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                return issue(
                    r.span(),
                    "`max_rate` is messages per second, more than 0, e.g. max_rate = 2000",
                );
            }
            Some(r) => *r.get_ref(),
            None => 0.0,
        },
        api,
    };
    Ok(Target {
        url,
        protocol: transport.protocol,
        ca_file: transport.ca_file,
        credentials: transport.credentials,
        connect_timeout: t.connect_timeout.unwrap_or(Micros(5_000_000)),
        source_addresses: match &t.source_addresses {
            Some(s) => super::addresses::parse_list(s.get_ref()).map_err(|m| {
                SpannedIssue::new(Some(s.span()), format!("`source_addresses`: {m}"))
            })?,
            None => Vec::new(),
        },
        server,
    })
}

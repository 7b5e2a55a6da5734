//! The binary's side of `chatload capacity` and of `chatload plan --capacity`: flags checked
//! and turned into the library's options, progress and results printed, exit codes chosen.

use super::{BAD_INPUT, PASSED, RUN_FAILED, THRESHOLD_FAILED, parse_duration_flag, parse_rule};
use crate::cli::CapacityArgs;
use chatload::capacity::{self, CapacityOptions, Limit};
use chatload::engine::RunOptions;
use chatload::scenario;
use std::path::PathBuf;

/// The runtime's workers for a search: one for an open model, whose steps each run on the
/// threads `chatload run` would give them (`engine::workers::layout`, per step); every core
/// for a closed model. A file that does not load gets the default here and its error from
/// [`capacity`].
pub fn runtime_workers(f: &CapacityArgs) -> Option<usize> {
    let base = scenario::load(&f.file).ok()?;
    base.closed_loop().is_none().then_some(1)
}

pub async fn capacity(f: CapacityArgs) -> u8 {
    if !(f.from > 0.0 && f.to >= f.from && f.factor > 1.0) {
        eprintln!(
            "chatload capacity: need 0 < --from <= --to and --factor > 1 (found from {}, to {}, factor {})",
            f.from, f.to, f.factor
        );
        return BAD_INPUT;
    }
    let step_time = match parse_duration_flag("--step-time", &f.step_time) {
        Ok(d) if d.0 >= 2_000_000 => d,
        Ok(_) => {
            eprintln!("chatload capacity: --step-time must be at least 2s to judge a step");
            return BAD_INPUT;
        }
        Err(code) => return code,
    };
    let base = match scenario::load(&f.file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return BAD_INPUT;
        }
    };
    if let Some(t) = f.target.as_deref()
        && !base.target.protocol.fits_url(t)
    {
        eprintln!(
            "chatload capacity: --target {} does not fit the scenario's protocol \"{}\"",
            chatload::secrets::redact_url(t),
            base.target.protocol.name()
        );
        return BAD_INPUT;
    }
    let names: Vec<String> = base.patterns.iter().map(|p| p.name.clone()).collect();
    let mut slos = Vec::new();
    for rule in &f.slos {
        match parse_rule(rule, &names) {
            Ok(t) => slos.push(t),
            Err(e) => {
                eprintln!("chatload capacity: --slo {rule:?}: {e}");
                return BAD_INPUT;
            }
        }
    }
    if slos.is_empty() {
        slos = base.thresholds.clone();
    }
    let started = chrono::Utc::now();
    let out = f.out.unwrap_or_else(|| {
        PathBuf::from("reports").join(format!(
            "{}-capacity-{}",
            base.name,
            started.format("%Y%m%dT%H%M%SZ")
        ))
    });
    let opts = CapacityOptions {
        slos,
        from: f.from,
        to: f.to,
        factor: f.factor,
        refine: f.refine,
        step_time,
        run: RunOptions {
            target: f.target,
            ca_file: f.ca_file,
            quiet: f.quiet,
            reports_root: "reports".into(),
            ..RunOptions::default()
        },
        out: out.clone(),
    };
    let result = capacity::search(&base, &opts, |s| {
        eprintln!(
            "chatload capacity: {:.2}× → {:.1} messages/s, {} p99 {:.2} ms: {}",
            s.multiplier,
            s.messages_per_s,
            s.metric,
            s.p99_us as f64 / 1000.0,
            if s.held {
                "held".to_string()
            } else {
                format!("broke ({})", s.why.as_deref().unwrap_or(""))
            }
        );
    })
    .await;
    let c = match result {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "chatload capacity: {}",
                chatload::secrets::redact(&e.to_string())
            );
            return super::interrupted_exit_code().unwrap_or(RUN_FAILED);
        }
    };
    if let Err(e) = capacity::report::write(&out, &c) {
        eprintln!("chatload capacity: {e}");
        return RUN_FAILED;
    }
    print!("{}", capacity::report::console(&c));
    println!("  report      {}", out.join("capacity.html").display());
    if let Some(code) = super::interrupted_exit_code() {
        return code;
    }
    match (&c.sustainable, c.limit) {
        (None, _) => THRESHOLD_FAILED,
        (_, Limit::Interrupted) => THRESHOLD_FAILED,
        _ => PASSED,
    }
}

/// Servers of the measured capacity that the plan's peak needs, with headroom.
pub fn servers_needed(plan: &chatload::plan::Plan, dir: &std::path::Path, headroom: &str) -> u8 {
    let c = match capacity::report::read(dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chatload plan: {e}");
            return BAD_INPUT;
        }
    };
    let Some(h) = headroom
        .trim()
        .strip_suffix('%')
        .and_then(|p| p.trim().parse::<f64>().ok())
        .filter(|p| (0.0..1000.0).contains(p))
    else {
        eprintln!("chatload plan: --headroom {headroom:?}: write a percentage, e.g. 30%");
        return BAD_INPUT;
    };
    let Some(s) = &c.sustainable else {
        eprintln!(
            "chatload plan: the capacity result in {} has no sustainable step to plan with",
            dir.display()
        );
        return BAD_INPUT;
    };
    let need = |peak: f64, per_server: f64| {
        if peak <= 0.0 {
            0.0
        } else if per_server <= 0.0 {
            f64::INFINITY
        } else {
            (peak * (1.0 + h / 100.0) / per_server).ceil()
        }
    };
    let by_messages = need(plan.peak.messages_per_s, s.messages_per_s);
    let by_deliveries = need(plan.peak.deliveries_per_s, s.deliveries_per_s);
    let servers = by_messages.max(by_deliveries).max(1.0);
    println!(
        "\ncapacity    one server held {:.1} messages/s and {:.1} deliveries/s ({} p99 {:.2} ms; {} in {})",
        s.messages_per_s,
        s.deliveries_per_s,
        s.metric,
        s.p99_us as f64 / 1000.0,
        c.scenario,
        dir.display()
    );
    println!(
        "servers     {servers:.0} for the peak of {:.1} messages/s and {:.1} deliveries/s with {h}% headroom (by messages {by_messages:.0}, by deliveries {by_deliveries:.0})",
        plan.peak.messages_per_s, plan.peak.deliveries_per_s
    );
    if c.scenario != plan.scenario {
        println!(
            "note        capacity was measured with scenario {}, the plan is for {}: the mixes may differ",
            c.scenario, plan.scenario
        );
    }
    PASSED
}

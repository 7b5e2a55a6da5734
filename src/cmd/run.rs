//! `chatload run`: the flags checked, the scenario loaded and adjusted, the run carried out,
//! its table printed; the exit code from its thresholds, its signal or its failure.

use super::{
    BAD_INPUT, PASSED, RUN_FAILED, THRESHOLD_FAILED, interrupted_exit_code, parse_duration_flag,
    parse_rule,
};
use chatload::engine::{self, RunOptions};
use chatload::report::console;
use chatload::scenario;

/// `chatload run` with its flags checked and its scenario loaded, before the async runtime
/// exists: how many workers the runtime gets depends on the scenario.
pub struct PreparedRun {
    scenario: scenario::Scenario,
    opts: RunOptions,
    threads: Option<u16>,
}

impl PreparedRun {
    /// The runtime's workers (`engine::workers::layout`): `None`, one per core.
    pub fn workers(&self) -> Option<usize> {
        self.layout().runtime_workers
    }

    fn layout(&self) -> engine::workers::Layout {
        engine::workers::layout(
            &self.scenario,
            self.opts.target_url(&self.scenario),
            self.threads.map(usize::from),
        )
    }
}

/// Everything `run` checks before it starts: an error here is bad input (exit 2).
pub fn prepare(args: crate::cli::RunArgs) -> Result<PreparedRun, u8> {
    let crate::cli::RunArgs {
        file,
        target,
        ca_file,
        duration,
        seed,
        users,
        segment,
        start_at,
        webhook_listen,
        out,
        force,
        quiet,
        thresholds,
        abort_on_fail,
        threads,
    } = args;
    // Before anything else: a run whose results cannot be kept is not started.
    if let Some(dir) = &out
        && let Err(why) = chatload::report::bundle::check_out(dir, force)
    {
        eprintln!("chatload: {why}");
        return Err(BAD_INPUT);
    }
    let segment = match segment.as_deref().map(chatload::workload::Segment::parse) {
        None => chatload::workload::Segment::WHOLE,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("chatload: --segment {e}");
            return Err(BAD_INPUT);
        }
    };
    let start_at = match start_at
        .as_deref()
        .map(chrono::DateTime::parse_from_rfc3339)
    {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(e)) => {
            eprintln!("chatload: --start-at: {e}; write a UTC time such as 2026-12-01T10:00:00Z");
            return Err(BAD_INPUT);
        }
    };
    if users == Some(0) {
        eprintln!("chatload: --users must be at least 1");
        return Err(BAD_INPUT);
    }
    let duration = duration
        .as_deref()
        .map(|d| parse_duration_flag("--duration", d))
        .transpose()?;
    if duration.is_some_and(|d| d.0 < 1_000_000) {
        eprintln!("chatload: --duration must be at least 1s");
        return Err(BAD_INPUT);
    }
    const SCHEMES: [&str; 7] = [
        "ws://", "wss://", "mqtt://", "mqtts://", "http://", "https://", "xmpp://",
    ];
    if let Some(t) = target
        .as_deref()
        .filter(|t| !SCHEMES.iter().any(|s| t.starts_with(s)))
    {
        eprintln!(
            "chatload: --target {} is not a URL chatload can reach; write ws://, wss://, mqtt://, mqtts://, http://, https:// or xmpp://, e.g. ws://127.0.0.1:7070/v1/ws",
            chatload::secrets::redact_url(t)
        );
        return Err(BAD_INPUT);
    }
    let mut scenario = match scenario::load(&file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Err(BAD_INPUT);
        }
    };
    if let Some(t) = target.as_deref()
        && !scenario.target.protocol.fits_url(t)
    {
        eprintln!(
            "chatload: --target {} does not fit {}'s protocol \"{}\"; give a URL of that protocol or set [target] protocol in the scenario",
            chatload::secrets::redact_url(t),
            file.display(),
            scenario.target.protocol.name()
        );
        return Err(BAD_INPUT);
    }
    if let Some(n) = users {
        scenario.consumers = scenario.consumers.resized(n);
    }
    let names: Vec<String> = scenario.patterns.iter().map(|p| p.name.clone()).collect();
    for rule in &thresholds {
        match parse_rule(rule, &names) {
            Ok(t) => scenario.thresholds.push(t),
            Err(e) => {
                eprintln!("chatload: --threshold {rule:?}: {e}");
                return Err(BAD_INPUT);
            }
        }
    }
    let opts = RunOptions {
        target,
        ca_file,
        duration,
        seed,
        out,
        reports_root: "reports".into(),
        quiet,
        abort_on_fail,
        segment,
        start_at,
        webhook_listen,
        // Set from the layout once the runtime exists (`run`).
        shards: 1,
    };
    if let Some(why) = chatload::engine::segment_refusal(&scenario, segment) {
        eprintln!("chatload: {why}");
        return Err(BAD_INPUT);
    }
    Ok(PreparedRun {
        scenario,
        opts,
        threads,
    })
}

/// The run, its bundle, its table and its exit code.
pub async fn run(prepared: PreparedRun) -> u8 {
    let shards = prepared.layout().shards;
    let PreparedRun {
        scenario, mut opts, ..
    } = prepared;
    opts.shards = shards;
    // The run, then its bundle: written here, by the command, once the run is over.
    match engine::execute(scenario, &opts)
        .await
        .and_then(engine::Finished::write_bundle)
    {
        Ok(result) => {
            print!(
                "{}",
                console::render(
                    &result.summary,
                    Some(&result.bundle_dir.display().to_string())
                )
            );
            if let Some(code) = interrupted_exit_code() {
                code
            } else if result.summary.passed {
                PASSED
            } else {
                THRESHOLD_FAILED
            }
        }
        Err(engine::RunError::Bundle { error, summary }) => {
            // The run's figures are not lost with its files: shown here, and the
            // file that could not be written is named.
            print!("{}", console::render(&summary, None));
            eprintln!(
                "chatload: {}",
                chatload::secrets::redact(&error.to_string())
            );
            interrupted_exit_code().unwrap_or(RUN_FAILED)
        }
        Err(e) => {
            // Credentials from the environment never reach the terminal, nor a target's
            // escape sequences (the error may quote what it answered).
            let said = chatload::secrets::redact(&e.to_string());
            let lines: Vec<String> = said.lines().map(chatload::secrets::printable).collect();
            eprintln!("chatload: {}", lines.join("\n"));
            interrupted_exit_code().unwrap_or(RUN_FAILED)
        }
    }
}

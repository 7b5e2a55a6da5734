//! The `chatload` binary: parses the command line, calls the library, prints one clear
//! sentence on failure and maps outcomes to exit codes (0 passed, 1 a threshold failed,
//! 2 bad input, 3 the run could not be carried out, 128 + N ended by signal N).

mod capacity_command;
mod cli;
mod merge_command;

use chatload::engine::{self, RunOptions};
use chatload::report::console;
use chatload::scenario::{self, ServerKnobs, units};
use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

const PASSED: u8 = 0;
const THRESHOLD_FAILED: u8 = 1;
const BAD_INPUT: u8 = 2;
const RUN_FAILED: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { BAD_INPUT } else { PASSED });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chatload: cannot start the async runtime: {e}");
            return ExitCode::from(RUN_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(dispatch(cli.command)))
}

/// 128 + the signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP) when a signal ended
/// the run: an interrupted run is never a pass, whatever its thresholds said.
fn interrupted_exit_code() -> Option<u8> {
    engine::signals::exit_code().map(|c| u8::try_from(c).unwrap_or(u8::MAX))
}

fn parse_duration_flag(flag: &str, text: &str) -> Result<units::Micros, u8> {
    units::parse_duration(text).map_err(|e| {
        eprintln!("chatload: {flag}: {e}");
        BAD_INPUT
    })
}

async fn dispatch(command: Command) -> u8 {
    match command {
        Command::Validate { files } => validate(&files),
        Command::Run {
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
        } => {
            // Before anything else: a run whose results cannot be kept is not started.
            if let Some(dir) = &out
                && let Err(why) = chatload::report::bundle::check_out(dir, force)
            {
                eprintln!("chatload: {why}");
                return BAD_INPUT;
            }
            let segment = match segment.as_deref().map(chatload::workload::Segment::parse) {
                None => chatload::workload::Segment::WHOLE,
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    eprintln!("chatload: --segment {e}");
                    return BAD_INPUT;
                }
            };
            let start_at = match start_at
                .as_deref()
                .map(chrono::DateTime::parse_from_rfc3339)
            {
                None => None,
                Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
                Some(Err(e)) => {
                    eprintln!(
                        "chatload: --start-at: {e}; write a UTC time such as 2026-12-01T10:00:00Z"
                    );
                    return BAD_INPUT;
                }
            };
            if users == Some(0) {
                eprintln!("chatload: --users must be at least 1");
                return BAD_INPUT;
            }
            let duration = match duration
                .as_deref()
                .map(|d| parse_duration_flag("--duration", d))
                .transpose()
            {
                Ok(d) => d,
                Err(code) => return code,
            };
            if duration.is_some_and(|d| d.0 < 1_000_000) {
                eprintln!("chatload: --duration must be at least 1s");
                return BAD_INPUT;
            }
            const SCHEMES: [&str; 6] = [
                "ws://", "wss://", "mqtt://", "mqtts://", "http://", "https://",
            ];
            if let Some(t) = target
                .as_deref()
                .filter(|t| !SCHEMES.iter().any(|s| t.starts_with(s)))
            {
                eprintln!(
                    "chatload: --target {} is not a URL chatload can reach; write ws://, wss://, mqtt://, mqtts://, http:// or https://, e.g. ws://127.0.0.1:7070/v1/ws",
                    chatload::transport::secrets::redact_url(t)
                );
                return BAD_INPUT;
            }
            let mut scenario = match scenario::load(&file) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return BAD_INPUT;
                }
            };
            if let Some(t) = target.as_deref()
                && !scenario.target.protocol.fits_url(t)
            {
                eprintln!(
                    "chatload: --target {} does not fit {}'s protocol \"{}\"; give a URL of that protocol or set [target] protocol in the scenario",
                    chatload::transport::secrets::redact_url(t),
                    file.display(),
                    scenario.target.protocol.name()
                );
                return BAD_INPUT;
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
                        return BAD_INPUT;
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
            };
            if let Some(why) = chatload::engine::segment_refusal(&scenario, segment) {
                eprintln!("chatload: {why}");
                return BAD_INPUT;
            }
            match engine::run(scenario, &opts).await {
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
                        chatload::transport::secrets::redact(&error.to_string())
                    );
                    interrupted_exit_code().unwrap_or(RUN_FAILED)
                }
                Err(e) => {
                    // Credentials from the environment never reach the terminal.
                    eprintln!(
                        "chatload: {}",
                        chatload::transport::secrets::redact(&e.to_string())
                    );
                    interrupted_exit_code().unwrap_or(RUN_FAILED)
                }
            }
        }
        Command::Report { dir } => match chatload::report::bundle::read(&dir) {
            Ok((summary, hlog)) => {
                // A log that cannot be read is said so, not drawn as an empty report.
                if let Err(e) = chatload::metrics::hlog::digest(&hlog) {
                    eprintln!("chatload report: {}: {e}", dir.display());
                    return BAD_INPUT;
                }
                match chatload::report::bundle::write_reports(&dir, &summary, &hlog) {
                    Ok(()) => {
                        println!(
                            "chatload report: wrote {}/report.html, summary.md and junit.xml",
                            dir.display()
                        );
                        PASSED
                    }
                    Err(e) => {
                        eprintln!("chatload: {e}");
                        RUN_FAILED
                    }
                }
            }
            Err(e) => {
                eprintln!("chatload: {e}");
                BAD_INPUT
            }
        },
        Command::Compare {
            runs,
            max_regression,
            metrics,
            out,
            allow_different,
        } => compare(
            &runs,
            &max_regression,
            metrics,
            out.as_deref(),
            allow_different,
        ),
        Command::Merge { bundles, out } => merge_command::merge(&bundles, &out),
        Command::Capacity(args) => capacity_command::capacity(args).await,
        Command::Plan {
            file,
            users,
            json,
            capacity,
            headroom,
        } => match scenario::load(&file) {
            Ok(s) => {
                let p = chatload::plan::plan(&s, users);
                if json {
                    match serde_json::to_string_pretty(&p) {
                        Ok(text) => println!("{text}"),
                        Err(e) => {
                            eprintln!("chatload: cannot write JSON: {e}");
                            return RUN_FAILED;
                        }
                    }
                } else {
                    print!("{}", chatload::plan::render(&p));
                }
                match capacity {
                    Some(dir) => capacity_command::servers_needed(&p, &dir, &headroom),
                    None => PASSED,
                }
            }
            Err(e) => {
                eprintln!("{e}");
                BAD_INPUT
            }
        },
        Command::Schema => {
            println!("{}", chatload::scenario::schema::json());
            PASSED
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "chatload", &mut std::io::stdout());
            PASSED
        }
        Command::Serve {
            listen,
            delay,
            drop_every,
            duplicate_every,
            reorder_every,
            latency,
            stall_every,
            stall,
            reset_every,
            hold_every,
            hold,
            no_offline_queue,
            max_connections,
            header_timeout,
            max_group_size,
            queue_per_user,
            queue_bytes,
            max_rate,
            errors,
            webhook_reorder,
            seed,
        } => {
            // The flags become a `[target]` table, so they mean exactly what the scenario
            // keys mean and are checked by the same code.
            let mut table = format!(
                "drop_every = {drop_every}\nduplicate_every = {duplicate_every}\nreorder_every = {reorder_every}\nstall_every = {stall_every}\nreset_every = {reset_every}\nstall = {stall:?}\nhold_every = {hold_every}\nhold = {hold:?}\noffline_queue = {}\n",
                !no_offline_queue
            );
            if let Some(d) = delay {
                table.push_str(&format!("delay = {d:?}\n"));
            }
            if let Some(l) = latency {
                table.push_str(&format!("latency = {l}\n"));
            }
            if let Some(w) = webhook_reorder {
                table.push_str(&format!("webhook_reorder = {w:?}\n"));
            }
            if let Some(r) = max_rate {
                table.push_str(&format!("max_rate = {r:?}\n"));
            }
            if !errors.is_empty() {
                let mut parts = Vec::new();
                for e in &errors {
                    let Some((code, p)) = e.split_once('=') else {
                        eprintln!("chatload: --error {e}: write CODE=P, e.g. --error 130429=0.01");
                        return BAD_INPUT;
                    };
                    parts.push(format!("{:?} = {}", code.trim(), p.trim()));
                }
                table.push_str(&format!("errors = {{ {} }}\n", parts.join(", ")));
            }
            let knobs: ServerKnobs = match scenario::server_knobs(&table, seed) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("chatload serve: {e}");
                    return BAD_INPUT;
                }
            };
            let mut limits = chatload::server::Limits::default();
            if let Some(n) = max_connections {
                limits.max_connections = n.max(1);
            }
            limits.header_timeout = match parse_duration_flag("--header-timeout", &header_timeout) {
                Ok(d) if d.0 > 0 => d.as_std(),
                Ok(_) => {
                    eprintln!("chatload serve: --header-timeout must be more than 0");
                    return BAD_INPUT;
                }
                Err(code) => return code,
            };
            limits.max_group_size = max_group_size;
            limits.queue_per_user = queue_per_user.max(1);
            limits.queue_bytes = match scenario::units::parse_bytes(&queue_bytes) {
                Ok(b) if b >= 1.0 && b <= usize::MAX as f64 => b as usize,
                _ => {
                    eprintln!(
                        "chatload serve: --queue-bytes {queue_bytes}: write a size such as 256MiB"
                    );
                    return BAD_INPUT;
                }
            };
            serve(&listen, knobs, limits).await
        }
    }
}

/// A rule from the command line, checked against the scenario's pattern names.
fn parse_rule(rule: &str, patterns: &[String]) -> Result<scenario::threshold::Threshold, String> {
    split_rule(rule).and_then(|(k, c)| scenario::threshold::parse(k, &c, patterns))
}

/// `delivery.p99<300ms` → (`delivery.p99`, `< 300ms`), written as a scenario would.
fn split_rule(rule: &str) -> Result<(&str, String), String> {
    let at = rule.find(['<', '>', '=']).ok_or_else(|| {
        "write METRIC OPERATOR LIMIT, e.g. 'delivery.p99<300ms' or 'loss==0'".to_string()
    })?;
    let cond = rule[at..].trim();
    let op_len = cond
        .bytes()
        .take_while(|b| matches!(b, b'<' | b'>' | b'='))
        .count();
    Ok((
        rule[..at].trim(),
        format!("{} {}", &cond[..op_len], cond[op_len..].trim()),
    ))
}

fn read_summary(path: &std::path::Path) -> Result<chatload::report::Summary, String> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    chatload::report::bundle::parse_summary(&file, &text)
}

fn compare(
    runs: &[std::path::PathBuf],
    max_regression: &str,
    metrics: Vec<String>,
    out: Option<&std::path::Path>,
    allow_different: bool,
) -> u8 {
    let tolerance = match max_regression
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
    {
        Some(n) => n / 100.0,
        None => {
            eprintln!("chatload: --max-regression {max_regression}: write a percentage, e.g. 10%");
            return BAD_INPUT;
        }
    };
    let mut summaries = Vec::new();
    for r in runs {
        match read_summary(r) {
            Ok(s) => summaries.push(s),
            Err(e) => {
                eprintln!("chatload: {e}");
                return BAD_INPUT;
            }
        }
    }
    // Runs of different scenarios differ for reasons other than a regression.
    if !allow_different
        && let Some(first) = summaries.first()
        && let Some((i, other)) = summaries.iter().enumerate().find(|(_, s)| {
            s.scenario != first.scenario
                || (!s.scenario_sha256.is_empty()
                    && !first.scenario_sha256.is_empty()
                    && s.scenario_sha256 != first.scenario_sha256)
        })
    {
        let why = if other.scenario != first.scenario {
            format!("scenarios {} and {}", first.scenario, other.scenario)
        } else {
            "scenario files of different content".to_string()
        };
        eprintln!(
            "chatload compare: {} and {} are runs of different scenarios ({why}); compare runs of one scenario, or add --allow-different",
            runs[0].display(),
            runs[i].display()
        );
        return BAD_INPUT;
    }
    let Some(candidate) = summaries.pop() else {
        return BAD_INPUT;
    };
    let gated = if metrics.is_empty() {
        chatload::report::compare::DEFAULT_GATED
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        metrics
    };
    let c = chatload::report::compare::compare(&summaries, &candidate, tolerance, &gated);
    if let Some(unknown) = gated
        .iter()
        .find(|g| !c.deltas.iter().any(|d| &d.name == *g))
    {
        eprintln!(
            "chatload: --metric {unknown}: neither run measured it; use METRIC.p50|p90|p99|p999|max, messages_per_s, deliveries_per_s, loss_rate, error_rate, duplicate_rate or late_send_rate"
        );
        return BAD_INPUT;
    }
    let text = chatload::report::compare::render_markdown(&c);
    print!("{text}");
    if let Some(path) = out
        && let Err(e) = std::fs::write(path, &text)
    {
        eprintln!("chatload: cannot write {}: {e}", path.display());
        return RUN_FAILED;
    }
    if c.regressed() {
        THRESHOLD_FAILED
    } else {
        PASSED
    }
}

fn validate(files: &[std::path::PathBuf]) -> u8 {
    let mut code = PASSED;
    for f in files {
        match scenario::load(f) {
            Ok(s) => println!(
                "{}: ok ({} users online, {} patterns, {:.0}s)",
                f.display(),
                s.consumers.online_users,
                s.patterns.len(),
                s.duration.as_secs_f64()
            ),
            Err(e) => {
                eprintln!("{e}");
                code = BAD_INPUT;
            }
        }
    }
    code
}

async fn serve(listen: &str, knobs: ServerKnobs, limits: chatload::server::Limits) -> u8 {
    let server = match chatload::server::start_with_limits(listen, knobs, limits).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chatload: {e}");
            return RUN_FAILED;
        }
    };
    eprintln!(
        "chatload serve: listening on {} and {}/v1/{{business}}/messages (Ctrl-C to stop)",
        server.url(),
        server.http_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    let stats = server.stats();
    server.shutdown().await;
    eprintln!(
        "chatload serve: stopped; {} connections, {} messages accepted, {} deliveries, {} business sends accepted, {} statuses",
        stats.connections,
        stats.accepted,
        stats.delivered,
        stats.business_accepted,
        stats.business_statuses
    );
    // The faults it injected, so a run's loss can be checked against what the server did.
    let faults: Vec<String> = [
        ("dropped", stats.dropped),
        ("discarded for offline users", stats.discarded),
        ("held back", stats.held),
        ("duplicated", stats.duplicated),
        ("reordered", stats.reordered),
        ("connections reset", stats.resets),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect();
    if !faults.is_empty() {
        eprintln!("chatload serve: faults: {}", faults.join(", "));
    }
    // What its bounds refused, so a client that pushed them can see it.
    let bounded: Vec<String> = [
        (
            "connections closed at --max-connections",
            stats.connections_refused,
        ),
        (
            "connections closed at --header-timeout",
            stats.headers_timed_out,
        ),
        ("groups refused at --max-group-size", stats.groups_refused),
        ("deliveries dropped at --queue-per-user", stats.overflowed),
        ("deliveries not kept at --queue-bytes", stats.queue_full),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect();
    if !bounded.is_empty() {
        eprintln!("chatload serve: bounds: {}", bounded.join(", "));
    }
    PASSED
}

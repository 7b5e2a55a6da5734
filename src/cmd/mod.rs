//! One file per subcommand, each acting on its clap arguments (`crate::cli`) and choosing
//! its exit code; here the codes themselves, the dispatch and what several commands share.

mod capacity;
mod compare;
mod completions;
mod merge;
mod plan;
mod report;
mod run;
mod schema;
mod serve;
mod setup;
mod validate;

use crate::cli::Command;
use chatload::engine;
use chatload::scenario::{self, units};

pub const PASSED: u8 = 0;
pub const THRESHOLD_FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const RUN_FAILED: u8 = 3;

/// A command as far as it can be checked before the async runtime exists.
pub enum Ready {
    Run(Box<run::PreparedRun>),
    Other(Box<Command>),
}

impl Ready {
    /// `run` is checked and its scenario loaded here (an error is its exit code); the other
    /// commands check their arguments once running.
    pub fn prepare(command: Command) -> Result<Ready, u8> {
        match command {
            Command::Run(a) => run::prepare(a).map(|r| Ready::Run(Box::new(r))),
            other => Ok(Ready::Other(Box::new(other))),
        }
    }

    /// Worker threads the runtime should have; `None`: one per core.
    pub fn workers(&self) -> Option<usize> {
        match self {
            Ready::Run(r) => r.workers(),
            Ready::Other(c) => match c.as_ref() {
                Command::Serve(a) => a.threads.map(usize::from),
                Command::Capacity(a) => capacity::runtime_workers(a),
                _ => None,
            },
        }
    }
}

pub async fn dispatch(ready: Ready) -> u8 {
    let command = match ready {
        Ready::Run(r) => return run::run(*r).await,
        Ready::Other(c) => c,
    };
    match *command {
        Command::Run(a) => match run::prepare(a) {
            Ok(r) => run::run(r).await,
            Err(code) => code,
        },
        Command::Report(a) => report::report(a),
        Command::Compare(a) => compare::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Capacity(a) => capacity::capacity(a).await,
        Command::Schema => schema::run(),
        Command::Completions(a) => completions::run(a),
        Command::Serve(a) => serve::run(a).await,
        Command::Setup(a) => setup::run(a).await,
    }
}

/// 128 + the signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP) when a signal ended
/// the run: an interrupted run is never a pass, whatever its thresholds said.
pub fn interrupted_exit_code() -> Option<u8> {
    engine::signals::exit_code().map(|c| u8::try_from(c).unwrap_or(u8::MAX))
}

pub fn parse_duration_flag(flag: &str, text: &str) -> Result<units::Micros, u8> {
    units::parse_duration(text).map_err(|e| {
        eprintln!("chatload: {flag}: {e}");
        BAD_INPUT
    })
}

/// A rule from the command line, checked against the scenario's pattern names.
pub fn parse_rule(
    rule: &str,
    patterns: &[String],
) -> Result<scenario::threshold::Threshold, String> {
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

//! The `chatload` binary: parses the command line and maps what each subcommand (`cmd`)
//! returns to the exit code (0 passed, 1 a threshold failed, 2 bad input, 3 the run could
//! not be carried out, 128 + N ended by signal N).

mod cli;
mod cmd;

use clap::Parser;
use cli::Cli;
use cmd::{BAD_INPUT, PASSED, RUN_FAILED};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { BAD_INPUT } else { PASSED });
        }
    };
    // Checked first: a run's scenario decides how many workers the runtime gets.
    let ready = match cmd::Ready::prepare(cli.command) {
        Ok(r) => r,
        Err(code) => return ExitCode::from(code),
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = ready.workers() {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chatload: cannot start the async runtime: {e}");
            return ExitCode::from(RUN_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(cmd::dispatch(ready)))
}

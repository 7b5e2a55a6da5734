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
    let threads = match &cli.command {
        cli::Command::Run(args) => args.threads,
        cli::Command::Serve(args) => args.threads,
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chatload: cannot start the async runtime: {e}");
            return ExitCode::from(RUN_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(cmd::dispatch(cli.command)))
}

//! `chatload completions`: a shell completion script.

use super::PASSED;

pub fn run(args: crate::cli::CompletionsArgs) -> u8 {
    let crate::cli::CompletionsArgs { shell } = args;
    {
        let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "chatload", &mut std::io::stdout());
        PASSED
    }
}

//! `chatload validate`: scenario files checked, nothing sent.

use super::{BAD_INPUT, PASSED};
use chatload::scenario;

pub fn run(args: crate::cli::ValidateArgs) -> u8 {
    validate(&args.files)
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

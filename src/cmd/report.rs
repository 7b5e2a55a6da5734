//! `chatload report`: a bundle's report.html, summary.md and junit.xml written again from its
//! summary.json and latency.hlog.

use super::{BAD_INPUT, PASSED, RUN_FAILED};

pub fn report(args: crate::cli::ReportArgs) -> u8 {
    let crate::cli::ReportArgs { dir } = args;
    match chatload::report::bundle::read(&dir) {
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
    }
}

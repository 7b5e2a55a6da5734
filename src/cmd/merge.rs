//! The binary's side of `chatload merge`: the segments' bundles read, joined by the
//! library, thresholds judged again on the whole, the merged bundle written and each
//! segment's clock offset printed; exit codes chosen.

use super::{BAD_INPUT, PASSED, RUN_FAILED, THRESHOLD_FAILED, parse_rule};
use std::path::PathBuf;

/// `chatload merge`: the segments' bundles joined into one, thresholds judged on the whole.
pub fn run(args: crate::cli::MergeArgs) -> u8 {
    merge(&args.bundles, &args.out)
}

fn merge(bundles: &[PathBuf], out: &std::path::Path) -> u8 {
    use chatload::report::merge::{self, Part};
    // Writing over a segment would destroy what is being merged.
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a == b
            || matches!(
                (std::fs::canonicalize(a), std::fs::canonicalize(b)),
                (Ok(x), Ok(y)) if x == y
            )
    };
    if let Some(input) = bundles.iter().find(|b| same(b, out)) {
        eprintln!(
            "chatload merge: --out {} is one of the segments being merged; give a new folder",
            input.display()
        );
        return BAD_INPUT;
    }
    if out.exists() && !out.is_dir() {
        eprintln!(
            "chatload merge: --out {} is a file, not a folder",
            out.display()
        );
        return BAD_INPUT;
    }
    let mut parts = Vec::new();
    for dir in bundles {
        let (summary, hlog) = match chatload::report::bundle::read_with_log(dir) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("chatload merge: {e}");
                return BAD_INPUT;
            }
        };
        let intervals = match chatload::metrics::hlog::read(&hlog) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("chatload merge: {}: {e}", dir.display());
                return BAD_INPUT;
            }
        };
        parts.push(Part {
            name: dir.display().to_string(),
            summary,
            intervals,
        });
    }
    let rules_from = parts.first().map(|p| p.summary.thresholds.clone());
    let merged = match merge::merge(parts) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("chatload merge: {e}");
            return BAD_INPUT;
        }
    };
    let mut s = merged.summary;
    // The same rules, judged again on the merged numbers.
    let names: Vec<String> = s.patterns.iter().map(|p| p.name.clone()).collect();
    let rules: Vec<_> = rules_from
        .unwrap_or_default()
        .iter()
        .filter_map(|v| parse_rule(&v.rule, &names).ok())
        .collect();
    let totals = chatload::metrics::hlog::totals(&merged.intervals);
    let single = names.len() == 1;
    let percentile = |pattern: Option<&str>, metric: &str, q: f64| -> Option<u64> {
        let tag = match pattern {
            None => metric.to_string(),
            Some(_) if single => metric.to_string(),
            Some(p) => {
                chatload::metrics::hlog::pattern_tag(names.iter().position(|n| n == p)?, metric)
            }
        };
        totals
            .get(&tag)
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(q / 100.0))
    };
    s.thresholds = chatload::report::verdict::judge(&s, &rules, &percentile);
    s.passed = s.thresholds.iter().all(|v| v.passed);
    let started =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(s.epoch_unix_ms / 1000.0);
    let log = chatload::metrics::hlog::write_intervals(started, &s.scenario, &merged.intervals);
    let written = chatload::report::bundle::Staged::new(Some(out), out)
        .map_err(|source| chatload::report::bundle::BundleError {
            path: out.display().to_string(),
            source,
        })
        .and_then(|staged| chatload::report::bundle::write_staged(staged, &s, Some(&log)));
    if let Err(e) = written {
        eprintln!("chatload merge: {e}");
        return RUN_FAILED;
    }
    print!(
        "{}",
        chatload::report::console::render(&s, Some(&out.display().to_string()))
    );
    for m in &s.merged_from {
        println!(
            "  segment {}/{}  {}  starts {:+.1} ms after the first{}  {} messages",
            m.index,
            s.merged_from.len(),
            m.bundle,
            m.epoch_offset_ms,
            m.start_offset_ms
                .map(|o| format!(", {o:+.1} ms after --start-at"))
                .unwrap_or_default(),
            m.messages_sent
        );
    }
    if s.passed { PASSED } else { THRESHOLD_FAILED }
}

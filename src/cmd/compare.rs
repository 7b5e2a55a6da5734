//! `chatload compare`: a candidate run against baselines; exit 1 on a regression past the
//! baselines' noise, 2 when the runs do not belong together.

use super::{BAD_INPUT, PASSED, RUN_FAILED, THRESHOLD_FAILED};

pub fn run(args: crate::cli::CompareArgs) -> u8 {
    let crate::cli::CompareArgs {
        runs,
        max_regression,
        metrics,
        out,
        allow_different,
    } = args;
    compare(
        &runs,
        &max_regression,
        metrics,
        out.as_deref(),
        allow_different,
    )
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
    if !allow_different && let Some(why) = unlike(runs, &summaries) {
        eprintln!("chatload compare: {why}; compare runs made alike, or add --allow-different");
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

/// Why these runs of one scenario differ for reasons other than the target, if they do: a
/// run that ended early covers part of the load, and another seed, population, duration or
/// share of users is another load.
fn unlike(runs: &[std::path::PathBuf], summaries: &[chatload::report::Summary]) -> Option<String> {
    if let Some((i, s)) = summaries
        .iter()
        .enumerate()
        .find(|(_, s)| s.ended != "completed")
    {
        return Some(format!(
            "{} ended early ({}), so its figures cover part of its load",
            runs[i].display(),
            s.ended
        ));
    }
    let first = summaries.first()?;
    summaries.iter().enumerate().skip(1).find_map(|(i, s)| {
        let setting = if s.seed != first.seed {
            format!("seed {} and {}", first.seed, s.seed)
        } else if s.population != first.population {
            format!("population {} and {}", first.population, s.population)
        } else if s.planned_duration_s != first.planned_duration_s {
            format!(
                "duration {}s and {}s",
                first.planned_duration_s, s.planned_duration_s
            )
        } else if s.users != first.users {
            format!("{} and {} virtual users", first.users, s.users)
        } else {
            return None;
        };
        Some(format!(
            "{} and {} ran the scenario with different settings ({setting})",
            runs[0].display(),
            runs[i].display()
        ))
    })
}

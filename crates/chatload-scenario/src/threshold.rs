//! Threshold rules (`"delivery.p99" = "< 500ms"`): owns their syntax and meaning. Judging them
//! against measured values happens in `report::verdict`.

use super::units::parse_duration;
use crate::metric::Metric;
use serde::Serialize;
use std::fmt;

/// What a rule looks at.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A latency statistic of one metric, optionally of one pattern: `delivery.p99`,
    /// `direct_chat.send.max`.
    Latency {
        pattern: Option<String>,
        metric: String,
        stat: Stat,
    },
    /// A counter from the accounting or errors: `loss`, `duplicates`, `errors`, ...
    Count { name: String },
    /// A ratio in percent: `loss_rate`, `error_rate`, `late_send_rate`, ...
    Rate { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    Min,
    Mean,
    Max,
    Percentile(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "==")]
    Eq,
}

impl Op {
    pub fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Lt => observed < limit,
            Op::Le => observed <= limit,
            Op::Gt => observed > limit,
            Op::Ge => observed >= limit,
            Op::Eq => (observed - limit).abs() < 1e-9,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// One rule: subject, comparison and the limit in the subject's unit (µs, count or percent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    pub text: String,
    pub subject: Subject,
    pub op: Op,
    pub limit: f64,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters a rule may name.
pub const COUNTS: &[&str] = &[
    "sent",
    "acked",
    "unacknowledged",
    "delivered",
    "loss",
    "lost",
    "in_flight",
    "duplicates",
    "reordered",
    "late_sends",
    "errors",
    "not_sent",
    "messages_scheduled",
    "delivered_late",
    "unverified",
    "refused",
];
/// Percent ratios a rule may name.
pub const RATES: &[&str] = &[
    "loss_rate",
    "error_rate",
    "duplicate_rate",
    "late_send_rate",
    "unacknowledged_rate",
];

/// Parses a rule from its key (`delivery.p99`) and condition (`< 500ms`).
pub fn parse(key: &str, condition: &str, patterns: &[String]) -> Result<Threshold, String> {
    let subject = parse_subject(key, patterns)?;
    let cond = condition.trim();
    let (op, rest) = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("<", Op::Lt),
        (">", Op::Gt),
    ]
    .iter()
    .find_map(|(s, op)| cond.strip_prefix(s).map(|r| (*op, r.trim())))
    .ok_or_else(|| {
        format!("`{cond}` is not a condition: start with <, <=, >, >= or ==, e.g. \"< 500ms\"")
    })?;
    let limit = match &subject {
        Subject::Latency { .. } => {
            parse_duration(rest)
                .map_err(|e| format!("the limit of a latency rule is a duration: {e}"))?
                .0 as f64
        }
        Subject::Count { .. } => rest
            .replace('_', "")
            .parse::<f64>()
            .map_err(|_| format!("`{rest}` is not a count: write a number, e.g. \"== 0\""))?,
        Subject::Rate { .. } => {
            let number = rest
                .strip_suffix('%')
                .ok_or_else(|| format!("`{rest}` is not a percentage: write e.g. \"< 0.1%\""))?;
            number
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("`{rest}` is not a percentage: write e.g. \"< 0.1%\""))?
        }
    };
    if !limit.is_finite() || limit < 0.0 {
        return Err(format!(
            "`{rest}` is not a usable limit: write a number of 0 or more (every quantity a rule checks is)"
        ));
    }
    Ok(Threshold {
        text: format!("{key} {cond}"),
        subject,
        op,
        limit,
    })
}

fn parse_subject(key: &str, patterns: &[String]) -> Result<Subject, String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (pattern, rest) = match parts.as_slice() {
        [first, rest @ ..] if patterns.iter().any(|p| p == first) && !rest.is_empty() => {
            (Some(first.to_string()), rest.to_vec())
        }
        _ => (None, parts.clone()),
    };
    match rest.as_slice() {
        [name] if pattern.is_none() && COUNTS.contains(name) => Ok(Subject::Count {
            name: name.to_string(),
        }),
        [name] if pattern.is_none() && RATES.contains(name) => Ok(Subject::Rate {
            name: name.to_string(),
        }),
        [metric, stat] if Metric::from_name(metric).is_some() => Ok(Subject::Latency {
            pattern,
            metric: metric.to_string(),
            stat: parse_stat(stat)?,
        }),
        [metric, _] => Err(format!(
            "unknown metric `{metric}` in `{key}`: use one of {}",
            Metric::ALL.map(Metric::name).join(", ")
        )),
        _ => Err(format!(
            "`{key}` names nothing measured: use METRIC.STAT (e.g. \"delivery.p99\"), PATTERN.METRIC.STAT, or one of {}, {}",
            COUNTS.join(", "),
            RATES.join(", ")
        )),
    }
}

fn parse_stat(stat: &str) -> Result<Stat, String> {
    match stat {
        "min" => Ok(Stat::Min),
        "mean" | "avg" => Ok(Stat::Mean),
        "max" => Ok(Stat::Max),
        "median" => Ok(Stat::Percentile(50.0)),
        _ => {
            let digits = stat.strip_prefix('p').ok_or_else(|| bad_stat(stat))?;
            // p99 = 99, p999 = 99.9, p9999 = 99.99, p99.5 = 99.5
            let value = if digits.contains('.') {
                digits.parse::<f64>().map_err(|_| bad_stat(stat))?
            } else if digits.len() > 2 && digits.starts_with("99") {
                format!("{}.{}", &digits[..2], &digits[2..])
                    .parse::<f64>()
                    .map_err(|_| bad_stat(stat))?
            } else {
                digits.parse::<f64>().map_err(|_| bad_stat(stat))?
            };
            if value <= 0.0 || value > 100.0 {
                return Err(bad_stat(stat));
            }
            Ok(Stat::Percentile(value))
        }
    }
}

fn bad_stat(stat: &str) -> String {
    format!(
        "`{stat}` is not a statistic: use min, mean, max, median or a percentile such as p50, p99, p999"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_into_subjects_and_limits() {
        let pats = vec!["direct_chat".to_string()];
        let t = parse("delivery.p99", "< 500ms", &pats).unwrap();
        assert_eq!(
            t.subject,
            Subject::Latency {
                pattern: None,
                metric: "delivery".into(),
                stat: Stat::Percentile(99.0)
            }
        );
        assert_eq!((t.op, t.limit), (Op::Lt, 500_000.0));
        let t = parse("direct_chat.send.p999", "<= 1s", &pats).unwrap();
        assert!(
            matches!(t.subject, Subject::Latency { stat: Stat::Percentile(p), .. } if (p - 99.9).abs() < 1e-9)
        );
        let t = parse("loss", "== 0", &pats).unwrap();
        assert_eq!((t.op, t.limit), (Op::Eq, 0.0));
        let t = parse("error_rate", "< 0.1%", &pats).unwrap();
        assert_eq!(t.limit, 0.1);
        assert!(
            parse("delivery.p99", "500ms", &pats)
                .unwrap_err()
                .contains("condition")
        );
        assert!(
            parse("latency.p99", "< 1s", &pats)
                .unwrap_err()
                .contains("unknown metric")
        );
        assert!(parse("delivery.p0", "< 1s", &pats).is_err());
        assert!(
            parse("loss_rate", "< 1", &pats)
                .unwrap_err()
                .contains("percentage")
        );
    }
}

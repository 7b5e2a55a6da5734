//! `junit.xml`: the threshold verdicts as JUnit test cases, for CI systems that read them
//! (one test suite per run, one case per rule; a failed rule is a failure with its message).

use super::summary::Summary;
use std::fmt::Write as _;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

pub fn render(s: &Summary) -> String {
    let failures = s.thresholds.iter().filter(|v| !v.passed).count();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"chatload\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
        s.thresholds.len(),
        s.duration_s
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"chatload.{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        escape(&s.scenario),
        s.thresholds.len(),
        s.duration_s,
        escape(&s.started_at)
    );
    for v in &s.thresholds {
        let _ = write!(
            o,
            "    <testcase classname=\"chatload.{}.thresholds\" name=\"{}\" time=\"0\"",
            escape(&s.scenario),
            escape(&v.rule)
        );
        if v.passed {
            o.push_str("/>\n");
        } else {
            let _ = writeln!(
                o,
                ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>",
                escape(&v.message),
                escape(&v.message)
            );
        }
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::Verdict;

    #[test]
    fn verdicts_become_test_cases_and_failures() {
        let json = include_str!("../../tests/data/summary-min.json");
        let mut s: Summary = serde_json::from_str(json).expect("fixture");
        s.thresholds = vec![
            Verdict {
                rule: "delivery.p99 < 5ms".into(),
                passed: true,
                observed: Some(1.0),
                limit: 5000.0,
                unit: "us".into(),
                message: "ok".into(),
            },
            Verdict {
                rule: "loss == 0".into(),
                passed: false,
                observed: Some(3.0),
                limit: 0.0,
                unit: "count".into(),
                message: "loss == 0 failed: observed 3 <allowed 0>".into(),
            },
        ];
        let x = render(&s);
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        assert!(x.contains("name=\"delivery.p99 &lt; 5ms\" time=\"0\"/>"));
        assert!(x.contains("<failure message=\"loss == 0 failed: observed 3 &lt;allowed 0&gt;\""));
        assert_eq!(x.matches("<testcase").count(), 2);
    }
}

//! `junit.xml`: the threshold verdicts as JUnit test cases, for CI systems that read them
//! (one test suite per run, one case per rule; a failed rule is a failure with its message).

use super::escape::xml;
use super::summary::Summary;
use std::fmt::Write as _;

/// The accounting as JUnit properties, so a CI system shows the numbers beside the verdicts.
fn properties(s: &Summary) -> String {
    let a = &s.accounting;
    let r = &a.not_sent_reasons;
    let props: [(&str, String); 17] = [
        ("ended", s.ended.clone()),
        ("sent", a.sent.to_string()),
        ("delivered", a.delivered.to_string()),
        ("lost", a.lost.to_string()),
        ("delivered_late", a.delivered_late.to_string()),
        ("in_flight", a.in_flight.to_string()),
        ("unverified", a.unverified.to_string()),
        ("failed", a.failed.to_string()),
        ("messages_scheduled", a.messages_scheduled.to_string()),
        ("messages_sent", a.messages_sent.to_string()),
        ("not_sent", a.not_sent.to_string()),
        (
            "not_sent.sender_never_connected",
            r.sender_never_connected.to_string(),
        ),
        (
            "not_sent.sender_disconnected",
            r.sender_disconnected.to_string(),
        ),
        ("not_sent.chatload_behind", r.chatload_behind.to_string()),
        ("not_sent.unsendable", r.unsendable.to_string()),
        ("refused", a.refused.to_string()),
        ("duplicated", a.duplicated.to_string()),
    ];
    let mut o = String::from("    <properties>\n");
    for (name, value) in props {
        let _ = writeln!(
            o,
            "      <property name=\"{}\" value=\"{}\"/>",
            xml(name),
            xml(&value)
        );
    }
    o.push_str("    </properties>\n");
    o
}

pub fn render(s: &Summary) -> String {
    // A run that did not complete (a signal, --abort-on-fail) is a failed case of its own,
    // so a cancelled CI job never reads as green.
    let ended_early = s.ended != "completed";
    let cases = s.thresholds.len() + usize::from(ended_early);
    let failures = s.thresholds.iter().filter(|v| !v.passed).count() + usize::from(ended_early);
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"chatload\" tests=\"{cases}\" failures=\"{failures}\" time=\"{:.3}\">",
        s.duration_s
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"chatload.{}\" tests=\"{cases}\" failures=\"{failures}\" errors=\"0\" time=\"{:.3}\" timestamp=\"{}\">",
        xml(&s.scenario),
        s.duration_s,
        xml(&s.started_at)
    );
    o.push_str(&properties(s));
    if ended_early {
        let why = match &s.signal {
            Some(signal) => format!("the run was {} by {signal}", s.ended),
            None => format!("the run ended early: {}", s.ended),
        };
        let _ = writeln!(
            o,
            "    <testcase classname=\"chatload.{}.run\" name=\"completed\" time=\"0\">\n      <failure message=\"{}\" type=\"run\">{}</failure>\n    </testcase>",
            xml(&s.scenario),
            xml(&why),
            xml(&why)
        );
    }
    for v in &s.thresholds {
        let _ = write!(
            o,
            "    <testcase classname=\"chatload.{}.thresholds\" name=\"{}\" time=\"0\"",
            xml(&s.scenario),
            xml(&v.rule)
        );
        if v.passed {
            o.push_str("/>\n");
        } else {
            let _ = writeln!(
                o,
                ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>",
                xml(&v.message),
                xml(&v.message)
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

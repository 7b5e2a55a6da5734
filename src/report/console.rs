//! The compact table printed at the end of a run: latency per metric, the accounting
//! identity, errors and threshold verdicts. Owns wording and layout for the terminal.

use super::summary::Summary;
use crate::human::{format_us, thousands};
use std::fmt::Write as _;

fn us(v: u64) -> String {
    format_us(v as f64)
}

/// `sent N = delivered D + lost L (K arrived late) + in flight F + unverified U ✓`: where
/// every owed delivery went, and whether the identity holds.
pub fn delivery_identity(a: &crate::report::summary::Accounting) -> String {
    let mut o = format!(
        "sent {} = delivered {} + lost {}",
        thousands(a.sent),
        thousands(a.delivered),
        thousands(a.lost)
    );
    if a.delivered_late > 0 {
        let _ = write!(o, " ({} arrived late)", thousands(a.delivered_late));
    }
    let _ = write!(o, " + in flight {}", thousands(a.in_flight));
    if a.unverified > 0 {
        let _ = write!(o, " + unverified {}", thousands(a.unverified));
    }
    if a.failed > 0 {
        let _ = write!(o, " + failed {}", thousands(a.failed));
    }
    o.push_str(if a.balances() {
        "   ✓"
    } else {
        "   ✗ does not balance"
    });
    o
}

/// What the target handed over of earlier runs' messages, when it did: in no other count, so
/// said wherever the identities are.
pub fn earlier_runs_note(a: &crate::report::summary::Accounting) -> Option<String> {
    (a.earlier_runs > 0).then(|| {
        format!(
            "earlier runs' messages handed over {}: the target kept them (a persistent session, offline storage) and they are in no other count",
            thousands(a.earlier_runs)
        )
    })
}

/// Sends the target neither confirmed nor refused by the end, when there were any: the
/// `send` row counts only the confirmed ones, so without this a target that stopped
/// answering would look as fast as one that answered everything. How many were confirmed is
/// the send row's own count (`send_service` times the same sends from their actual write):
/// sends that failed (a timeout, an error) are in neither it nor the unacknowledged.
pub fn unacknowledged_note(s: &crate::report::summary::Summary) -> Option<String> {
    let a = &s.accounting;
    let confirmed = ["send", "send_service"]
        .iter()
        .filter_map(|m| s.metrics.get(*m))
        .map(|m| m.count)
        .max()
        .unwrap_or(0);
    (a.unacknowledged > 0).then(|| {
        format!(
            "sends never acknowledged {} of {}: the target neither confirmed nor refused them by the end, and the send latencies are of the {} it confirmed (a send rule counts the unacknowledged as slower than all of them)",
            thousands(a.unacknowledged),
            thousands(a.messages_sent),
            thousands(confirmed)
        )
    })
}

/// Connections chatload's own machine could not open, said beside the books they skewed.
pub fn local_limit_note(s: &crate::report::summary::Summary) -> Option<String> {
    let failed = s.errors_of(crate::metrics::ErrorKind::LocalLimit);
    if failed == 0 {
        return None;
    }
    Some(format!(
        "{} connections could not be opened for a limit of the machine chatload runs on, not the target's (local_limit): the users it could not connect count as not sent (sender never connected), and what was sent to them as lost",
        thousands(failed)
    ))
}

/// What the kernel of chatload's machine counted of TCP during the run, when it counted
/// anything that explains connect times of a second or more.
pub fn kernel_tcp_note(s: &crate::report::summary::Summary) -> Option<String> {
    let tcp = s
        .tcp
        .filter(|t| t.syn_retransmits > 0 || t.listen_overflows > 0)?;
    Some(format!(
        "this machine's kernel during the run (any process's): {} SYNs sent again, each such connect waiting a second or more for an answer (a full accept queue at the target, a filter or loss on the way), and {} connections dropped at the full accept queue of a listener on this machine (the target's, when it runs here: raise its backlog)",
        thousands(tcp.syn_retransmits),
        thousands(tcp.listen_overflows)
    ))
}

/// What chatload's own process used: CPU (and per message sent), peak memory (and per
/// connected user), so a run says what its load generator cost.
pub fn own_usage_note(s: &crate::report::summary::Summary) -> Option<String> {
    let own = s.own?;
    let sent = s.accounting.messages_sent;
    let per_message = if sent > 0 {
        format!(
            ", {} µs per message sent",
            thousands((own.cpu_s() * 1e6 / sent as f64).round() as u64)
        )
    } else {
        String::new()
    };
    let cores = own.cores_over(s.duration_s).map_or_else(String::new, |c| {
        format!(", {c:.2} of a core over the run's {:.1} s", s.duration_s)
    });
    let mib = own.peak_rss_bytes as f64 / (1024.0 * 1024.0);
    let per_user = if s.peak_connected > 0 {
        format!(
            ", {:.1} KiB per connected user at the peak of {}",
            own.peak_rss_bytes as f64 / 1024.0 / s.peak_connected as f64,
            thousands(s.peak_connected)
        )
    } else {
        String::new()
    };
    let whose = if s.target.embedded {
        " (with the embedded server, which runs in the same process)"
    } else if !s.merged_from.is_empty() {
        " (all segments' processes together)"
    } else {
        ""
    };
    Some(format!(
        "chatload's own process{whose}: CPU {:.1} s (its code {:.1} s, the kernel for it {:.1} s){cores}{per_message}; peak memory {mib:.1} MiB{per_user}",
        own.cpu_s(),
        own.cpu_user_s,
        own.cpu_system_s,
    ))
}

/// `messages scheduled S = sent M + not sent N (reasons) ✓`.
pub fn schedule_identity(a: &crate::report::summary::Accounting) -> String {
    let reasons = a.not_sent_reasons.describe();
    format!(
        "messages scheduled {} = sent {} + not sent {}{}   {}",
        thousands(a.messages_scheduled),
        thousands(a.messages_sent),
        thousands(a.not_sent),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({reasons})")
        },
        if a.schedule_balances() {
            "✓"
        } else {
            "✗ does not balance"
        }
    )
}

pub fn render(s: &Summary, bundle_dir: Option<&str>) -> String {
    let mut o = String::new();
    let a = &s.accounting;
    let _ = writeln!(
        o,
        "chatload · {} · seed {} · {:.1}s · {} · target {}{}",
        s.scenario,
        s.seed,
        s.duration_s,
        s.ended,
        s.target.url,
        match (s.target.embedded, s.target.protocol.as_str()) {
            (true, "chatload") => " (embedded)".to_string(),
            (true, p) => format!(" (embedded, {p})"),
            (false, "chatload") => String::new(),
            (false, p) => format!(" ({p})"),
        }
    );
    let _ = writeln!(
        o,
        "  users {} (peak connected {})   messages {} ({}/s)   deliveries {} ({}/s)",
        thousands(s.users as u64),
        thousands(s.peak_connected),
        thousands(a.messages_sent),
        per_second(s.messages_per_s),
        thousands(a.delivered),
        per_second(s.deliveries_per_s)
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "  {:<17}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "metric", "count", "min", "p50", "p90", "p99", "p99.9", "max"
    );
    for name in crate::metric::CONSOLE_ORDER.iter().map(|m| m.name()) {
        if let Some(m) = s.metrics.get(name) {
            let _ = writeln!(
                o,
                "  {:<17}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
                name,
                thousands(m.count),
                us(m.min_us),
                us(m.p50_us),
                us(m.p90_us),
                us(m.p99_us),
                us(m.p999_us),
                us(m.max_us)
            );
        }
    }
    if s.patterns.len() > 1 {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "  {:<17}{:>10}{:>12}{:>12}{:>10}{:>10}",
            "pattern", "msgs/s", "delivered", "lost", "p50", "p99"
        );
        for p in &s.patterns {
            // A merged bundle has no per-pattern histograms; a closed loop delivers nothing.
            let (p50, p99) = p
                .metrics
                .get("delivery")
                .or_else(|| p.metrics.get("send"))
                .map_or(("-".to_string(), "-".to_string()), |d| {
                    (us(d.p50_us), us(d.p99_us))
                });
            let _ = writeln!(
                o,
                "  {:<17}{:>10.1}{:>12}{:>12}{:>10}{:>10}",
                p.name,
                p.messages_per_s,
                thousands(p.accounting.delivered),
                thousands(p.accounting.lost),
                p50,
                p99
            );
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "  accounting  {}", delivery_identity(a));
    let _ = writeln!(o, "              {}", schedule_identity(a));
    let _ = writeln!(
        o,
        "              duplicates {}  reordered {}  late sends {} (max lag {})  refused {}  unexpected {}  retransmitted {}",
        thousands(a.duplicated),
        thousands(a.reordered),
        thousands(a.late_sends),
        us(s.max_send_lag_us),
        thousands(a.refused),
        thousands(a.unexpected),
        thousands(a.retransmitted)
    );
    if let Some(note) = unacknowledged_note(s) {
        let _ = writeln!(o, "              {note}");
    }
    if let Some(note) = earlier_runs_note(a) {
        let _ = writeln!(o, "              {note}");
    }
    if let Some(note) = local_limit_note(s) {
        let _ = writeln!(o, "              {note}");
    }
    if let Some(note) = kernel_tcp_note(s) {
        let _ = writeln!(o, "  tcp         {note}");
    }
    if let Some(note) = own_usage_note(s) {
        let _ = writeln!(o, "  generator   {note}");
    }
    if let Some(from) = s.schedule_uncounted_from_s {
        let _ = writeln!(
            o,
            "              chatload was too far behind its schedule to count all of it: the messages meant after {from:.1}s (of {:.1}s) are in no count",
            s.planned_duration_s
        );
    }
    if s.target.webhook_redelivered > 0 {
        let _ = writeln!(
            o,
            "              webhook batches pushed again by the target {} (taken once each)",
            thousands(s.target.webhook_redelivered)
        );
    }
    let total = s
        .patterns
        .iter()
        .fold(crate::metrics::Counters::default(), |mut acc, p| {
            acc.add(&p.counters);
            acc
        });
    if total.reads + total.typing_sent + total.presence_sent + total.heartbeats > 0 {
        let _ = writeln!(
            o,
            "  signals     reads {}  read receipts back {}  typing {} (seen {})  presence {} (seen {})  heartbeats {}  media {}",
            thousands(total.reads),
            thousands(total.read_receipts),
            thousands(total.typing_sent),
            thousands(total.typing_seen),
            thousands(total.presence_sent),
            thousands(total.presence_seen),
            thousands(total.heartbeats),
            super::markdown::bytes(total.media_bytes)
        );
    }
    for p in &s.patterns {
        let Some(b) = &p.business else { continue };
        let (requests, statuses) = business_lines(b);
        let _ = writeln!(o, "  business    {}: {requests}", p.name);
        let _ = writeln!(o, "              {statuses}");
    }
    for st in &s.storms {
        let t = |v: Option<u64>| v.map_or("never".to_string(), us);
        let _ = writeln!(
            o,
            "  storm       {} at {:.1}s: dropped {}, back {} (95% in {}, 99% in {}, all in {}), gave up {}, peak {} connects/s, duplicates {}",
            st.name,
            st.at_s,
            thousands(st.dropped),
            thousands(st.reconnected),
            t(st.time_to_95_us),
            t(st.time_to_99_us),
            t(st.time_to_all_us),
            thousands(st.gave_up),
            thousands(st.peak_connects_per_s),
            thousands(st.duplicates_during_recovery)
        );
    }
    if s.errors.is_empty() {
        let _ = writeln!(o, "  errors      none");
    } else {
        let list: Vec<String> = s
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {}", thousands(*v)))
            .collect();
        let _ = writeln!(o, "  errors      {}", list.join("  "));
        for line in errors_by_pattern(s) {
            let _ = writeln!(o, "              {line}");
        }
        for (kind, example) in &s.error_examples {
            let _ = writeln!(o, "              {kind}: {example}");
        }
    }
    for (i, v) in s.thresholds.iter().enumerate() {
        let label = if i == 0 { "thresholds" } else { "" };
        let _ = writeln!(
            o,
            "  {:<12}{} {}",
            label,
            if v.passed { "✓" } else { "✗" },
            v.message
        );
    }
    let a = &s.accounting;
    if s.thresholds.is_empty()
        && (a.lost > 0 || a.duplicated > 0 || a.not_sent > 0 || a.unacknowledged > 0)
    {
        // Without a rule the run passes whatever it lost; a user gating CI on the exit code
        // must read that here, not find it out later.
        let unanswered = if a.unacknowledged > 0 {
            format!(", {} sends never acknowledged", thousands(a.unacknowledged))
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  thresholds  none, so this run passes with {} lost, {} duplicated{unanswered} and {} not sent; a rule such as `loss == 0` in [thresholds] (or --threshold 'loss==0') fails it",
            thousands(a.lost),
            thousands(a.duplicated),
            thousands(a.not_sent)
        );
    }
    if let Some(dir) = bundle_dir {
        let _ = writeln!(o, "  report      {dir}");
    }
    o
}

/// A business pattern in two lines: its requests and refusals, then its statuses and the rest.
pub fn business_lines(b: &super::summary::BusinessSummary) -> (String, String) {
    (
        format!(
            "{} requests, {} accepted, {} retries; refused 130429 {}, 131056 {}, 131047 {}, 131048 {}, 5xx {}, timeouts {}",
            thousands(b.requests),
            thousands(b.accepted),
            thousands(b.retries),
            thousands(b.throttled_130429),
            thousands(b.pair_limited_131056),
            thousands(b.outside_window_131047),
            thousands(b.spam_131048),
            thousands(b.server_errors_5xx),
            thousands(b.timeouts)
        ),
        format!(
            "statuses sent {} delivered {} read {} failed {} (missing {}) · replies {} · late replies {} (accepted in violation {}) · duplicates {}",
            thousands(b.status_sent),
            thousands(b.status_delivered),
            thousands(b.status_read),
            thousands(b.status_failed),
            thousands(b.missing_statuses),
            thousands(b.replies),
            thousands(b.late_replies),
            thousands(b.window_violations),
            thousands(b.duplicates)
        ),
    )
}

/// A rate as people read it: "174.0" below a thousand, "94,341" above.
pub fn per_second(r: f64) -> String {
    if r >= 1000.0 {
        thousands(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

/// Error counts by kind, as one phrase: "http_5xx 12, request_timeout 3".
pub fn error_counts(errors: &std::collections::BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{k} {}", thousands(*v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the errors belong: one line per pattern with failed sends, then the connections'.
pub fn errors_by_pattern(s: &Summary) -> Vec<String> {
    let mut lines = Vec::new();
    let mut in_patterns = 0;
    for p in s.patterns.iter().filter(|p| !p.errors.is_empty()) {
        in_patterns += p.errors.values().sum::<u64>();
        lines.push(format!("in {}: {}", p.name, error_counts(&p.errors)));
    }
    if !lines.is_empty() && s.errors_total > in_patterns {
        lines.push(format!(
            "on connections: {}",
            thousands(s.errors_total - in_patterns)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::{LatencyStats, Summary};

    fn sent(sent: u64, unacknowledged: u64, confirmed: Option<u64>) -> Summary {
        let json = include_str!("../../tests/data/summary-min.json");
        let mut s: Summary = serde_json::from_str(json).expect("fixture");
        s.metrics.remove("send");
        s.metrics.remove("send_service");
        if let Some(count) = confirmed {
            let stats = LatencyStats {
                count,
                ..LatencyStats::default()
            };
            s.metrics.insert("send".into(), stats);
            s.metrics.insert("send_service".into(), stats);
        }
        s.accounting.messages_sent = sent;
        s.accounting.unacknowledged = unacknowledged;
        s
    }

    /// The confirmed count is the send rows' own: sends that timed out or failed are in
    /// neither it nor the unacknowledged (a silent HTTP target: 150 timed out, 50 were still
    /// waiting at the end, and none has a latency).
    #[test]
    fn the_unacknowledged_note_counts_only_the_confirmed_as_measured() {
        assert_eq!(unacknowledged_note(&sent(200, 0, Some(200))), None);
        assert_eq!(
            unacknowledged_note(&sent(200, 50, None)).as_deref(),
            Some(
                "sends never acknowledged 50 of 200: the target neither confirmed nor refused them by the end, and the send latencies are of the 0 it confirmed (a send rule counts the unacknowledged as slower than all of them)"
            )
        );
        let note = unacknowledged_note(&sent(1_200, 100, Some(1_000))).unwrap_or_default();
        assert!(
            note.contains("never acknowledged 100 of 1,200")
                && note.contains("of the 1,000 it confirmed"),
            "{note}"
        );
    }
}

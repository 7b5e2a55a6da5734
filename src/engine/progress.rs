//! Live progress on stderr: on a terminal one line rewritten in place, otherwise (CI) a
//! plain line every few seconds. Silent when quiet.

use crate::human::format_us;
use crate::human::thousands;
use crate::metrics::IntervalPoint;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    terminal: bool,
    every: Duration,
    last: Option<Instant>,
    total_s: f64,
}

impl Progress {
    pub fn new(quiet: bool, total_s: f64) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            enabled: !quiet,
            terminal,
            every: if terminal {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(5)
            },
            last: None,
            total_s,
        }
    }

    /// Shows the newest interval if it is time to; `phase` names the stage.
    pub fn update(
        &mut self,
        p: &IntervalPoint,
        phase: &str,
        delivered_total: u64,
        errors_total: u64,
    ) {
        if !self.enabled || self.last.is_some_and(|l| l.elapsed() < self.every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!(
            "[{:>5.0}s/{:.0}s] {:<9} connected {:>7}  {:>9} msg/s  delivered {:>11}  p99 {:<8} {:>9}  errors {}",
            p.t_s,
            self.total_s,
            phase,
            thousands(p.connected),
            thousands(p.messages_sent),
            thousands(delivered_total),
            // A closed loop over a request/response API delivers nothing: show its sends.
            if p.delivery.count > 0 || p.send.count == 0 {
                "delivery"
            } else {
                "send"
            },
            match (p.delivery.count, p.send.count) {
                (d, _) if d > 0 => format_us(p.delivery.p99_us as f64),
                (_, s) if s > 0 => format_us(p.send.p99_us as f64),
                _ => "-".into(),
            },
            thousands(errors_total)
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.enabled && self.terminal && self.last.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// The name of the stage the run is in at `now_us`, for the progress line.
pub fn phase_name(s: &crate::scenario::Scenario, now_us: u64) -> &'static str {
    let mut t = 0;
    for stage in &s.stages {
        t += stage.length.0;
        if now_us < t {
            return match stage.label {
                crate::scenario::StageLabel::Ramp => "ramp",
                crate::scenario::StageLabel::Hold => "hold",
                crate::scenario::StageLabel::RampDown => "ramp down",
                crate::scenario::StageLabel::Spike => "spike",
            };
        }
    }
    "drain"
}

//! The run's timeline as a whole: the moments patterns act at (a reconnect storm's `at`, a
//! campaign's `start`, a `mention_all` storm's `at`) and the check that each falls inside
//! the run, the diurnal day (`[load] diurnal`, `day`, `timezones`), and stretching
//! everything timed from the run's start to another length (`run --duration`, each step of
//! a capacity search), so a shortened run still has its storm after the ramp and its
//! campaign inside the run. Not the stages themselves (`compile`) and not how the engine
//! keeps time.

use super::compile::Result;
use super::compile::issue;
use super::error::SpannedIssue;
use super::file::{PatternSection, ScenarioFile};
use super::model::{Diurnal, PatternKind, Scenario};
use super::units::Micros;
use toml::Spanned;

impl PatternKind {
    /// The moment into the run this pattern acts at, with its key in the file.
    pub fn moment(&self) -> Option<(Micros, &'static str)> {
        match self {
            PatternKind::ReconnectStorm { at, .. } => Some((*at, "at")),
            PatternKind::BusinessBroadcast { start, .. } => Some((*start, "start")),
            PatternKind::GroupChat {
                mention_all: Some(m),
                ..
            } => Some((m.at, "mention_all.at")),
            _ => None,
        }
    }

    fn moment_mut(&mut self) -> Option<&mut Micros> {
        match self {
            PatternKind::ReconnectStorm { at, .. } => Some(at),
            PatternKind::BusinessBroadcast { start, .. } => Some(start),
            PatternKind::GroupChat {
                mention_all: Some(m),
                ..
            } => Some(&mut m.at),
            _ => None,
        }
    }
}

/// A moment at or after the run's end would never come: the pattern would do nothing while
/// the report still lists it.
pub(super) fn check_moment(
    kind: &PatternKind,
    name: &str,
    section: &Spanned<PatternSection>,
    duration: Micros,
) -> Result<()> {
    let Some((at, key)) = kind.moment() else {
        return Ok(());
    };
    if at < duration {
        return Ok(());
    }
    let span = match (kind, &section.get_ref().at) {
        (PatternKind::ReconnectStorm { .. }, Some(at)) => at.span(),
        _ => section.span(),
    };
    Err(SpannedIssue::new(
        Some(span),
        format!(
            "pattern `{name}` is timed at `{key}` = {}s, when the run is over (its stages end at {}s): give a moment before the end",
            at.as_secs_f64(),
            duration.as_secs_f64()
        ),
    ))
}

pub(super) fn compile_diurnal(file: &ScenarioFile, duration: Micros) -> Result<Option<Diurnal>> {
    let Some(load) = &file.load else {
        return Ok(None);
    };
    let Some(name) = &load.diurnal else {
        if load.day.is_some() || load.timezones.is_some() {
            return Err(SpannedIssue::new(
                None,
                "`day` and `timezones` shape a `diurnal` day: add e.g. diurnal = \"consumer_evening\"",
            ));
        }
        return Ok(None);
    };
    let day = load.day.unwrap_or(duration);
    if day.0 < 24_000 {
        return issue(
            name.span(),
            "`day` must be at least 24ms (a millisecond per hour)",
        );
    }
    let mut zones = Vec::new();
    if let Some(tz) = &load.timezones {
        for (offset, share) in tz.get_ref() {
            let o: f64 = offset.trim().parse().map_err(|_| {
                SpannedIssue::new(
                    Some(tz.span()),
                    format!(
                        "`{offset}` is not a UTC offset in hours: write e.g. \"-5\" or \"5.5\""
                    ),
                )
            })?;
            if !((-12.0..=14.0).contains(&o) && share.is_finite() && *share >= 0.0) {
                return issue(
                    tz.span(),
                    format!(
                        "time zone `{offset}` needs an offset in [-12, 14] and a share of 0 or more"
                    ),
                );
            }
            zones.push((o, *share));
        }
        if zones.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return issue(tz.span(), "the time zones' shares add up to 0");
        }
    }
    Diurnal::named(name.get_ref(), day)
        .map(|d| Some(d.across_zones(&zones)))
        .ok_or_else(|| {
            SpannedIssue::new(
                Some(name.span()),
                format!(
                    "unknown diurnal curve `{}`: use consumer_evening, workday or flat",
                    name.get_ref()
                ),
            )
        })
}

impl Scenario {
    /// Stretches the run to last `duration`: every stage, every moment a pattern acts at,
    /// and a diurnal day that spans the whole run (with the business window it sets) keep
    /// their place relative to the run. Everything else keeps its length: gaps, backoffs,
    /// heartbeats, deadlines and a `day` shorter or longer than the run.
    pub fn stretch_to(&mut self, duration: Micros) {
        let old = self.duration;
        let factor = duration.0 as f64 / old.0.max(1) as f64;
        let scaled = |t: Micros| Micros((t.0 as f64 * factor).round() as u64);
        for s in &mut self.stages {
            s.length = scaled(s.length);
        }
        let new = Micros(self.stages.iter().map(|s| s.length.0).sum());
        for p in &mut self.patterns {
            if let Some(at) = p.kind.moment_mut() {
                // Rounding may not push a moment that was inside the run out of it.
                *at = scaled(*at).min(Micros(new.0.saturating_sub(1)));
            }
        }
        if let Some(d) = &mut self.diurnal
            && d.day == old
        {
            if self.businesses.window == old {
                self.businesses.window = new;
            }
            d.day = new;
        }
        self.duration = new;
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::compile;
    use std::path::Path;

    fn scenario(text: &str) -> Result<crate::Scenario, String> {
        let file = toml::from_str(text).map_err(|e| e.to_string())?;
        compile(file, Path::new("t.toml")).map_err(|e| e.message)
    }

    const STORM: &str = r#"
[scenario]
name = "t"
[population.consumers]
users = 10
[[pattern]]
kind = "direct_chat"
conversations = "1/min per user"
[[pattern]]
kind = "reconnect_storm"
at = "20s"
[load]
stages = [{ ramp = "10s" }, { hold = "40s" }]
"#;

    #[test]
    fn stretching_a_run_moves_its_storm_with_its_stages() {
        let mut s = scenario(STORM).unwrap();
        s.stretch_to(crate::units::Micros(10_000_000));
        let lengths: Vec<u64> = s.stages.iter().map(|st| st.length.0).collect();
        assert_eq!(lengths, [2_000_000, 8_000_000]);
        assert_eq!(s.duration.0, 10_000_000);
        // 20 s of 50 s, after the 10 s ramp: at 4 s of 10 s, after the 2 s ramp.
        assert_eq!(s.patterns[1].kind.moment().map(|m| m.0.0), Some(4_000_000));
    }

    #[test]
    fn a_diurnal_day_spanning_the_run_is_stretched_and_an_explicit_one_is_kept() {
        let spanning = STORM.replace("[load]\n", "[load]\ndiurnal = \"workday\"\n");
        let mut s = scenario(&spanning).unwrap();
        s.stretch_to(crate::units::Micros(10_000_000));
        assert_eq!(s.diurnal.as_ref().map(|d| d.day.0), Some(10_000_000));
        let explicit = STORM.replace("[load]\n", "[load]\ndiurnal = \"workday\"\nday = \"30s\"\n");
        let mut s = scenario(&explicit).unwrap();
        s.stretch_to(crate::units::Micros(10_000_000));
        assert_eq!(s.diurnal.as_ref().map(|d| d.day.0), Some(30_000_000));
    }

    #[test]
    fn a_storm_after_the_run_is_refused() {
        let late = STORM.replace("at = \"20s\"", "at = \"50s\"");
        let e = scenario(&late).unwrap_err();
        assert!(
            e.contains("pattern `reconnect_storm` is timed at `at` = 50s, when the run is over (its stages end at 50s)"),
            "{e}"
        );
    }
}

//! The load profile: which virtual users are connected at which time. Users are ordered;
//! user k is connected while the profile's level × online users exceeds k. Owns that rule and
//! the safety margins around connects and disconnects; not the traffic itself.

use super::churn::Churn;
use crate::scenario::{Diurnal, PatternKind, Scenario, Stage, units::Micros};
use std::sync::Arc;

/// Time a connection is given to come up before traffic involves its user.
pub const CONNECT_MARGIN_US: u64 = 1_000_000;
/// Quiet time before a user's scheduled disconnect, so deliveries to it can land.
pub const DISCONNECT_MARGIN_US: u64 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Profile {
    /// (start µs, end µs, level at start, level at end) per stage.
    segments: Vec<(u64, u64, f64, f64)>,
    /// (start µs, end µs, rate at start, rate at end, peak of a spike) per stage.
    rates: Vec<(u64, u64, f64, f64, Option<f64>)>,
    diurnal: Option<Diurnal>,
    /// Presence churn: users also come and go on their own session schedule.
    churn: Option<Arc<Churn>>,
    users: u32,
    end_us: u64,
    final_level: f64,
    final_rate: f64,
}

impl Profile {
    pub fn new(stages: &[Stage], users: u32) -> Self {
        let mut segments = Vec::with_capacity(stages.len());
        let mut rates = Vec::with_capacity(stages.len());
        let (mut t, mut level, mut rate) = (0u64, 0.0, 1.0);
        for s in stages {
            segments.push((t, t + s.length.0, level, s.to));
            rates.push((t, t + s.length.0, rate, s.rate, s.peak));
            t += s.length.0;
            level = s.to;
            rate = s.rate;
        }
        Profile {
            segments,
            rates,
            diurnal: None,
            churn: None,
            users,
            end_us: t,
            final_level: level,
            final_rate: rate,
        }
    }

    /// The scenario's profile: its stages and, if it has one, its diurnal curve.
    pub fn for_scenario(s: &Scenario, users: u32) -> Self {
        let base = Profile::new(&s.stages, users);
        let churn = s.patterns.iter().find_map(|p| match &p.kind {
            PatternKind::Presence {
                session, offline, ..
            } => Churn::new(s.seed, users, session, offline, base.end_us)
                .ok()
                .map(Arc::new),
            _ => None,
        });
        Profile {
            diurnal: s.diurnal.clone(),
            churn,
            ..base
        }
    }

    /// Long-run share of time a user is connected within its online window (1 without churn).
    pub fn churn_share(&self) -> f64 {
        self.churn.as_ref().map_or(1.0, |c| c.share_online)
    }

    /// How many times the patterns' base rates apply at `t_us` (stages × diurnal curve).
    pub fn multiplier(&self, t_us: u64) -> f64 {
        let mut m = self.final_rate;
        for &(a, b, ra, rb, peak) in &self.rates {
            if t_us < b {
                let f = t_us.saturating_sub(a) as f64 / (b - a).max(1) as f64;
                m = match peak {
                    Some(p) if f < 0.5 => ra + (p - ra) * 2.0 * f,
                    Some(p) => p + (rb - p) * (2.0 * f - 1.0),
                    None => ra + (rb - ra) * f,
                };
                break;
            }
        }
        m * self.diurnal.as_ref().map_or(1.0, |d| d.at(t_us))
    }

    /// The largest multiplier anywhere in the run.
    pub fn max_multiplier(&self) -> f64 {
        let stages = self
            .rates
            .iter()
            .map(|&(_, _, ra, rb, p)| ra.max(rb).max(p.unwrap_or(0.0)))
            .fold(self.final_rate, f64::max);
        stages * self.diurnal.as_ref().map_or(1.0, |d| d.max())
    }

    /// Whether rates change over the run at all (otherwise no thinning draws are needed).
    pub fn shaped(&self) -> bool {
        self.diurnal.is_some()
            || self
                .rates
                .iter()
                .any(|&(_, _, ra, rb, p)| ra != 1.0 || rb != 1.0 || p.is_some())
    }

    pub fn users(&self) -> u32 {
        self.users
    }

    /// End of the last stage: the schedule sends nothing after it.
    pub fn end(&self) -> Micros {
        Micros(self.end_us)
    }

    /// Share of users connected at `t_us` (the final level holds after the last stage).
    pub fn level(&self, t_us: u64) -> f64 {
        for &(a, b, la, lb) in &self.segments {
            if t_us < b {
                if t_us < a {
                    return la;
                }
                let f = (t_us - a) as f64 / (b - a).max(1) as f64;
                return la + (lb - la) * f;
            }
        }
        self.final_level
    }

    /// Number of users connected at `t_us`.
    pub fn connected(&self, t_us: u64) -> u32 {
        ((self.level(t_us) * self.users as f64).round() as u32).min(self.users)
    }

    pub fn online(&self, user: u32, t_us: u64) -> bool {
        user < self.connected(t_us) && self.churn.as_ref().is_none_or(|c| c.online(user, t_us))
    }

    /// The first time after `t_us` at which `user` goes online or offline, if it ever does.
    pub fn next_change(&self, user: u32, t_us: u64) -> Option<u64> {
        let Some(churn) = &self.churn else {
            return self.next_level_change(user, t_us);
        };
        // Step through both kinds of change until the combined state really flips.
        let now = self.online(user, t_us);
        let mut t = t_us;
        for _ in 0..10_000 {
            let next = match (self.next_level_change(user, t), churn.next_toggle(user, t)) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b)?,
            };
            if self.online(user, next) != now {
                return Some(next);
            }
            t = next;
        }
        None
    }

    /// Online by the stages alone (ignoring presence churn).
    pub fn level_online_at(&self, user: u32, t_us: u64) -> bool {
        self.level_online(user, t_us)
    }

    fn level_online(&self, user: u32, t_us: u64) -> bool {
        user < self.connected(t_us)
    }

    fn next_level_change(&self, user: u32, t_us: u64) -> Option<u64> {
        let now = self.level_online(user, t_us);
        let n = self.users as f64;
        // online(user) ⇔ round(level·n) > user ⇔ level·n ≥ user + 0.5
        let threshold = (user as f64 + 0.5) / n;
        let mut best: Option<u64> = None;
        for &(a, b, la, lb) in &self.segments {
            if b <= t_us {
                continue;
            }
            let candidate = if la == lb || b == a {
                b
            } else {
                let f = (threshold - la) / (lb - la);
                if !(0.0..=1.0).contains(&f) {
                    continue;
                }
                a + (f * (b - a) as f64).ceil() as u64
            };
            // Step to the first microsecond where the state really differs.
            let start = candidate.max(t_us + 1);
            if let Some(c) = (start..start + 4).find(|&c| self.level_online(user, c) != now) {
                best = Some(best.map_or(c, |x| x.min(c)));
            }
        }
        best
    }

    /// Online for the whole window around `t_us`, so traffic to or from it is safe to schedule.
    pub fn eligible(&self, user: u32, t_us: u64) -> bool {
        let from = t_us.saturating_sub(CONNECT_MARGIN_US);
        let to = t_us + DISCONNECT_MARGIN_US;
        if !self.online(user, from) || !self.online(user, to) || !self.online(user, t_us) {
            return false;
        }
        if self
            .churn
            .as_ref()
            .is_some_and(|c| !c.steady(user, from, to))
        {
            return false;
        }
        // The level is linear between stage boundaries: checking those inside the window suffices.
        self.segments
            .iter()
            .flat_map(|&(a, b, _, _)| [a, b])
            .filter(|&x| x > from && x < to)
            .all(|x| self.online(user, x) && self.online(user, x.saturating_sub(1)))
    }

    /// The most users connected at any time up to each stage end (goose's launch envelope).
    pub fn launch_envelope(&self) -> Vec<(u32, u64)> {
        let mut peak = 0u32;
        self.segments
            .iter()
            .map(|&(a, b, _, lb)| {
                peak = peak.max(((lb * self.users as f64).round() as u32).min(self.users));
                (peak, b - a)
            })
            .collect()
    }
}

/// One user's next online or offline change, remembered until it has passed. The answer of
/// [`Profile::next_change`] at `t` holds at every later time before that change (nothing flips
/// in between), so a user's loop, which asks on every event it handles, computes it once per
/// change instead of once per frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct NextChange {
    /// When it was last asked, and the answer.
    known: Option<(u64, Option<u64>)>,
}

impl NextChange {
    pub fn at(&mut self, profile: &Profile, user: u32, t_us: u64) -> Option<u64> {
        if let Some((asked, change)) = self.known
            && asked <= t_us
            && change.is_none_or(|c| t_us < c)
        {
            return change;
        }
        let change = profile.next_change(user, t_us);
        self.known = Some((t_us, change));
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::StageLabel;

    fn stage(label: StageLabel, secs: u64, to: f64) -> Stage {
        Stage {
            label,
            length: Micros(secs * 1_000_000),
            to,
            rate: 1.0,
            peak: None,
        }
    }

    #[test]
    fn spikes_and_ramps_shape_the_rate_multiplier() {
        let mut spike = stage(StageLabel::Spike, 10, 1.0);
        spike.peak = Some(5.0);
        let mut up = stage(StageLabel::Hold, 10, 1.0);
        up.rate = 3.0;
        let p = Profile::new(&[stage(StageLabel::Ramp, 10, 1.0), spike, up], 10);
        assert_eq!(p.multiplier(5_000_000), 1.0);
        assert!(
            (p.multiplier(15_000_000) - 5.0).abs() < 1e-9,
            "the spike peaks mid-stage"
        );
        assert!((p.multiplier(12_500_000) - 3.0).abs() < 1e-9);
        assert!(
            (p.multiplier(25_000_000) - 2.0).abs() < 1e-9,
            "a rate ramp is linear"
        );
        assert_eq!(p.multiplier(40_000_000), 3.0);
        assert_eq!(p.max_multiplier(), 5.0);
        assert!(p.shaped());
        let d = Diurnal::named("consumer_evening", Micros(24_000_000)).unwrap();
        let mean = (0..24_000).map(|ms| d.at(ms * 1000)).sum::<f64>() / 24_000.0;
        assert!((mean - 1.0).abs() < 0.01, "the curve averages 1: {mean}");
        assert!(
            d.at(21_000_000) > 1.5 && d.at(4_000_000) < 0.2,
            "evening peak, night trough"
        );
        // Half the users twelve hours ahead: the evening peaks of both halves show, the
        // curve is flatter, and it still averages 1.
        let mixed = d.clone().across_zones(&[(0.0, 0.5), (12.0, 0.5)]);
        let mean = (0..24_000).map(|ms| mixed.at(ms * 1000)).sum::<f64>() / 24_000.0;
        assert!((mean - 1.0).abs() < 0.01, "the mix averages 1: {mean}");
        assert!(mixed.max() < d.max());
        assert!((mixed.at(9_000_000) - (d.at(9_000_000) + d.at(21_000_000)) / 2.0).abs() < 1e-9);
        let east = d.clone().across_zones(&[(3.0, 1.0)]);
        assert!(
            (east.at(18_000_000) - d.at(21_000_000)).abs() < 1e-9,
            "21:00 local at 18:00 UTC"
        );
    }

    #[test]
    fn users_connect_in_order_and_leave_in_reverse() {
        let p = Profile::new(
            &[
                stage(StageLabel::Ramp, 10, 1.0),
                stage(StageLabel::Hold, 10, 1.0),
                stage(StageLabel::RampDown, 10, 0.0),
            ],
            100,
        );
        assert_eq!(p.connected(0), 0);
        assert_eq!(p.connected(5_000_000), 50);
        assert_eq!(p.connected(15_000_000), 100);
        assert_eq!(p.connected(25_000_000), 50);
        assert!(p.online(0, 1_000_000) && !p.online(99, 1_000_000));
        assert!(
            !p.eligible(10, 1_100_000),
            "just connected: not yet eligible"
        );
        assert!(p.eligible(10, 3_000_000));
        assert!(!p.eligible(49, 24_500_000), "about to leave: not eligible");
        for user in [0u32, 10, 49, 99] {
            let on = p.next_change(user, 0).unwrap();
            assert!(
                !p.online(user, on - 1) && p.online(user, on),
                "user {user} comes online at {on}"
            );
            let off = p.next_change(user, on).unwrap();
            assert!(
                p.online(user, off - 1) && !p.online(user, off),
                "user {user} leaves at {off}"
            );
            assert_eq!(p.next_change(user, off), None);
        }
        assert_eq!(
            p.launch_envelope(),
            vec![(100, 10_000_000), (100, 10_000_000), (100, 10_000_000)]
        );
    }

    /// The remembered change is the one `next_change` gives at every time, with presence
    /// churn on top of the stages (several changes per user) and without.
    #[test]
    fn a_remembered_next_change_is_what_the_profile_says() {
        let source = r#"
[scenario]
name = "t"
seed = 7
[population.consumers]
users = 50
[[pattern]]
kind = "presence"
session = { exponential = { mean = "2s" } }
offline = { exponential = { mean = "1s" } }
[load]
stages = [{ ramp = "5s" }, { hold = "20s" }, { ramp_down = "5s" }]
"#;
        let scenario = crate::scenario::parse(std::path::Path::new("t.toml"), source).unwrap();
        let churned = Profile::for_scenario(&scenario, 50);
        let plain = Profile::new(&scenario.stages, 50);
        let mut changes_seen = 0;
        for profile in [&churned, &plain] {
            for user in [0u32, 7, 25, 49] {
                let mut remembered = NextChange::default();
                let mut last = None;
                // Uneven steps, some landing exactly on a change and just before one.
                let mut t = 0u64;
                while t < 31_000_000 {
                    let want = profile.next_change(user, t);
                    assert_eq!(remembered.at(profile, user, t), want, "user {user} at {t}");
                    if want != last {
                        changes_seen += 1;
                        last = want;
                    }
                    t = match want {
                        Some(c) if c - t > 1 && t.is_multiple_of(3) => c - 1,
                        Some(c) if t % 3 == 1 => c,
                        _ => t + 37_013,
                    };
                }
            }
        }
        assert!(
            changes_seen > 40,
            "churn gives several changes per user: {changes_seen}"
        );
    }
}

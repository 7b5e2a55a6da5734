//! Finding the knee: a scenario's offered load stepped up (its rates multiplied, or its users
//! for a closed model), each step held long enough to judge, until an SLO breaks, loss or
//! errors appear, or chatload itself falls behind its schedule; then a bisection between
//! the last good step and the first bad one. Owns the search and the verdict of each step;
//! each step is an ordinary run with its own bundle, and `report` shows the whole.

pub mod report;

use crate::engine::{self, RunOptions};
use crate::report::Summary;
use crate::scenario::threshold::Threshold;
use crate::scenario::{PatternKind, Scenario};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A step whose late sends exceed this share of its messages says more about chatload's
/// machine than about the target. One stall of chatload's process makes every send due
/// during it late, so the share is about the share of the step's time chatload was held up:
/// 1% is 40 ms of a 4-second hold. A shared machine stalls a process for 10-20 ms now and
/// then (a 19 ms stall measured here with two busy loops beside it: 13 of 6,400 sends, 0.2%),
/// which says nothing about the target; a generator out of CPU makes most sends late.
pub const LATE_SHARE: f64 = 0.01;

#[derive(Debug, Clone)]
pub struct CapacityOptions {
    pub slos: Vec<Threshold>,
    /// The first multiplier and the largest one tried.
    pub from: f64,
    pub to: f64,
    /// Each coarse step multiplies the load by this.
    pub factor: f64,
    /// Bisection steps between the last good and the first bad multiplier.
    pub refine: u32,
    /// How long each step runs (its timeline is stretched to it, see `Scenario::stretch_to`).
    pub step_time: crate::scenario::units::Micros,
    pub run: RunOptions,
    /// Where the capacity bundle goes (the steps' bundles go inside it).
    pub out: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// An SLO failed, messages were lost or refused, or sends went unacknowledged: the target's limit.
    Target,
    /// chatload fell behind its own schedule: the generator's limit, not the target's.
    Generator,
    /// Every step up to `to` held.
    NotReached,
    /// The run was interrupted.
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub multiplier: f64,
    /// Messages per second the schedule offered while the load was held (what chatload was
    /// asked to send; `messages_per_s` is what it did send).
    pub offered_per_s: f64,
    /// Achieved while the load was held (the seconds after the first ramp), per second.
    pub messages_per_s: f64,
    pub deliveries_per_s: f64,
    pub users: u64,
    /// Latency percentiles (µs) of `delivery`, or of `send` when nothing is delivered.
    pub metric: String,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub lost: u64,
    pub errors: u64,
    pub late_sends: u64,
    pub messages: u64,
    /// chatload's own CPU over the step, in cores (busy seconds per second of the run; with
    /// the embedded server, the server's too): how near the generator came to its limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_cores: Option<f64>,
    pub held: bool,
    /// Why the step failed, in a sentence.
    pub why: Option<String>,
    pub bundle: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Capacity {
    pub schema_version: u32,
    pub scenario: String,
    pub target: String,
    pub slos: Vec<String>,
    pub steps: Vec<Step>,
    /// The highest step that held, if any.
    pub sustainable: Option<Step>,
    /// The first step that broke, with why.
    pub broke: Option<Step>,
    pub limit: Limit,
}

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error(transparent)]
    Run(#[from] engine::RunError),
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

impl Capacity {
    /// First measurements that broke where the same load held when measured again: tail
    /// events of the target (or the machine) below the knee that did not repeat.
    pub fn breaks_not_repeated(&self) -> Vec<&Step> {
        self.steps
            .chunk_by(|a, b| a.multiplier.total_cmp(&b.multiplier).is_eq())
            .filter(|same| same.len() > 1 && same.last().is_some_and(|s| s.held))
            .filter_map(|same| same.first().filter(|s| !s.held))
            .collect()
    }
}

/// Whether the scenario is a closed model (its load is users, not rates).
pub fn closed_model(s: &Scenario) -> bool {
    s.closed_loop().is_some()
}

/// The scenario at `m` times its load: every pattern's rate multiplied, or for a closed
/// model its population.
pub fn scaled(s: &Scenario, m: f64) -> Scenario {
    let mut s = s.clone();
    if closed_model(&s) {
        let users = ((s.consumers.users as f64) * m).round().max(1.0) as u64;
        s.consumers = s.consumers.resized(users);
        return s;
    }
    for p in &mut s.patterns {
        match &mut p.kind {
            PatternKind::DirectChat { conversations, .. } => conversations.per_second *= m,
            PatternKind::GroupChat { rate, .. } => rate.per_second *= m,
            PatternKind::SupportConversation { conversations, .. } => conversations.per_second *= m,
            PatternKind::OtpBurst { rate, .. } => *rate *= m,
            PatternKind::BusinessBroadcast { send_rate, .. } => *send_rate *= m,
            PatternKind::Presence { .. }
            | PatternKind::ReconnectStorm { .. }
            | PatternKind::ClosedLoop { .. } => {}
        }
    }
    s
}

/// Judges one step's run against its SLOs (`slos`, in the order of the summary's
/// verdicts): did the load hold, why not, and was chatload itself the limit?
pub fn judge(s: &Summary, slos: &[Threshold]) -> (bool, Option<String>, bool) {
    let a = &s.accounting;
    let late_limit = (a.messages_sent as f64 * LATE_SHARE).max(0.0);
    let late_share = a.late_sends as f64 / a.messages_sent.max(1) as f64;
    // A latency percentile whose tail holds more samples than chatload sent late was broken
    // by the target: the late sends alone cannot have moved it past its limit.
    let broken_by_target = s.thresholds.iter().zip(slos).find(|(v, rule)| {
        !v.passed
            && matches!(
                rule.subject,
                crate::scenario::threshold::Subject::Latency {
                    stat: crate::scenario::threshold::Stat::Percentile(q),
                    ..
                } if (100.0 - q) / 100.0 > late_share
            )
    });
    // Users chatload could not connect are owed and send nothing: every count after this
    // would be the generator's machine, whatever the target did.
    let failed = s.errors_of(crate::metrics::ErrorKind::LocalLimit);
    if failed > 0 {
        return (
            false,
            Some(format!(
                "{failed} connections failed on a limit of chatload's own machine (local_limit): the generator, not the target, is the limit here"
            )),
            true,
        );
    }
    if let Some((v, _)) = broken_by_target {
        return (false, Some(v.message.clone()), false);
    }
    if a.late_sends as f64 > late_limit {
        return (
            false,
            Some(format!(
                "chatload fell behind its schedule ({} late sends of {} messages): the generator, not the target, is the limit here",
                a.late_sends, a.messages_sent
            )),
            true,
        );
    }
    if let Some(v) = s.thresholds.iter().find(|v| !v.passed) {
        return (false, Some(v.message.clone()), false);
    }
    if a.lost > 0 {
        return (false, Some(format!("{} deliveries lost", a.lost)), false);
    }
    // Neither delivered nor lost when the step ended (a `drain` shorter than the loss
    // deadline): a load cannot be said to hold on deliveries nobody saw arrive.
    if a.in_flight > 0 {
        return (
            false,
            Some(format!(
                "{} deliveries still in flight when the step ended (give the scenario a `drain` at least as long as its `loss_deadline`)",
                a.in_flight
            )),
            false,
        );
    }
    // Taken or not, the target left these unanswered: a load it cannot confirm it did not hold.
    if a.unacknowledged > 0 {
        return (
            false,
            Some(format!(
                "{} of {} sends never acknowledged by the target",
                a.unacknowledged, a.messages_sent
            )),
            false,
        );
    }
    if s.errors_total > 0 {
        return (false, Some(format!("{} errors", s.errors_total)), false);
    }
    if s.ended != "completed" {
        return (false, Some(format!("the run ended: {}", s.ended)), false);
    }
    (true, None, false)
}

/// Messages offered (scheduled), messages sent and deliveries per second over the whole
/// seconds after `from_s` (the hold), or over the whole run when the hold has no whole
/// second.
fn held_rates(s: &Summary, from_s: f64) -> (f64, f64, f64) {
    let points: Vec<_> = s
        .series
        .points
        .iter()
        .filter(|p| p.t_s > from_s + 0.999 && p.t_s <= s.duration_s + 1e-6)
        .collect();
    if points.is_empty() {
        let secs = s.duration_s.max(1e-9);
        return (
            s.accounting.messages_scheduled as f64 / secs,
            s.messages_per_s,
            s.deliveries_per_s,
        );
    }
    let n = points.len() as f64 * s.series.interval_s.max(1e-9);
    (
        points.iter().map(|p| p.messages_scheduled).sum::<u64>() as f64 / n,
        points.iter().map(|p| p.messages_sent).sum::<u64>() as f64 / n,
        points.iter().map(|p| p.delivered).sum::<u64>() as f64 / n,
    )
}

/// The length of a leading ramp, in seconds.
fn ramp_s(s: &Scenario) -> f64 {
    s.stages
        .first()
        .filter(|st| st.label == crate::scenario::StageLabel::Ramp)
        .map_or(0.0, |st| st.length.as_secs_f64())
}

/// The step as the search keeps it, and whether the generator was the limit.
fn step_of(
    m: f64,
    offered: f64,
    from_s: f64,
    (s, slos): (&Summary, &[Threshold]),
    bundle: &std::path::Path,
) -> (Step, bool) {
    let (held, why, generator) = judge(s, slos);
    let (scheduled_per_s, messages_per_s, deliveries_per_s) = held_rates(s, from_s);
    // What the schedule actually offered while the load was held; the plan's steady-state
    // figure only when nothing was counted (a bundle from before schema 2).
    let offered = if scheduled_per_s > 0.0 {
        scheduled_per_s
    } else {
        offered
    };
    let metric = if s.metrics.contains_key("delivery") {
        "delivery"
    } else {
        "send"
    };
    let lat = s.metrics.get(metric);
    let step = Step {
        multiplier: m,
        offered_per_s: offered,
        messages_per_s,
        deliveries_per_s,
        users: s.users as u64,
        metric: metric.to_string(),
        p50_us: lat.map_or(0, |l| l.p50_us),
        p90_us: lat.map_or(0, |l| l.p90_us),
        p99_us: lat.map_or(0, |l| l.p99_us),
        max_us: lat.map_or(0, |l| l.max_us),
        lost: s.accounting.lost,
        errors: s.errors_total,
        late_sends: s.accounting.late_sends,
        messages: s.accounting.messages_sent,
        generator_cores: s.own.and_then(|o| o.cores_over(s.duration_s)),
        held,
        why,
        bundle: bundle.display().to_string(),
    };
    (step, generator)
}

/// Runs one step and judges it; `progress` hears about it.
async fn run_step(
    base: &Scenario,
    m: f64,
    opts: &CapacityOptions,
    index: usize,
) -> Result<(Step, bool, bool), CapacityError> {
    let mut s = scaled(base, m);
    s.thresholds = opts.slos.clone();
    let offered = crate::plan::plan(&s, None).peak.messages_per_s;
    let dir = opts.out.join(format!("step-{index:02}-x{m:.3}"));
    // The threads `chatload run` would give this step (one while it is light, else one shard
    // per core); a closed model's steps share the runtime's workers.
    let target = opts.run.target_url(&s);
    let run = RunOptions {
        out: Some(dir.clone()),
        duration: Some(opts.step_time),
        shards: crate::engine::workers::layout(&s, target, None).shards,
        ..opts.run.clone()
    };
    // The step's timeline is stretched to the step time as `run` stretches it.
    let scale = opts.step_time.0 as f64 / s.duration.0.max(1) as f64;
    // The load is held once the ramp is over and the last users' connect margin has passed.
    let from_s = ramp_s(&s) * scale + crate::workload::profile::CONNECT_MARGIN_US as f64 / 1e6;
    // Each step is a whole run whose bundle the search writes into the step's folder.
    let r = engine::execute(s, &run).await?.write_bundle()?;
    let interrupted = r.summary.ended == "interrupted";
    let (step, generator) = step_of(m, offered, from_s, (&r.summary, &opts.slos), &dir);
    Ok((step, generator, interrupted))
}

/// The search: coarse steps up by `factor` from `from` until one breaks (or `to`), then
/// `refine` bisections between the last good multiplier and the first bad one.
pub async fn search(
    base: &Scenario,
    opts: &CapacityOptions,
    progress: impl FnMut(&Step),
) -> Result<Capacity, CapacityError> {
    let mut search = searched(opts, progress, async |m, index| {
        run_step(base, m, opts, index).await
    })
    .await?;
    search.scenario = base.name.clone();
    // --target, else the scenario's url; only without either is it the embedded server.
    search.target = opts
        .run
        .target_url(base)
        .map(crate::secrets::redact_url)
        .unwrap_or_else(|| "embedded".into());
    Ok(search)
}

/// The search with `run` measuring each step (its multiplier and number): what it found.
async fn searched(
    opts: &CapacityOptions,
    mut progress: impl FnMut(&Step),
    mut run: impl AsyncFnMut(f64, usize) -> Result<(Step, bool, bool), CapacityError>,
) -> Result<Capacity, CapacityError> {
    let mut steps: Vec<Step> = Vec::new();
    let mut good: Option<f64> = None;
    let mut bad: Option<(f64, bool)> = None;
    let mut limit = Limit::NotReached;
    let mut m = opts.from;
    // Runs one step, tells `progress`, keeps it: (held, generator-limited, interrupted).
    let mut step_at = async |m: f64, steps: &mut Vec<Step>| -> Result<_, CapacityError> {
        let (mut step, mut generator, mut interrupted) = run(m, steps.len() + 1).await?;
        if !step.held && !interrupted {
            // One break may be a moment without CPU (another process, a virtual machine's
            // stolen time) on either side, not a limit: the same load is measured once more,
            // and only breaking again bounds the search. Falling behind twice names the
            // generator; a break that did not repeat stays in the table and the verdict. A
            // fresh CI run's coarse step at 4× broke once (p99 553 ms, p50 0.30 ms, 4 late
            // sends) against a broker whose limit was past 13×, and capped the knee at 3.83×.
            if let Some(why) = step.why.as_mut() {
                why.push_str("; measured again");
            }
            progress(&step);
            steps.push(step);
            (step, generator, interrupted) = run(m, steps.len() + 1).await?;
        }
        progress(&step);
        let held = step.held;
        steps.push(step);
        Ok((held, generator, interrupted))
    };
    loop {
        let (held, generator, interrupted) = step_at(m, &mut steps).await?;
        if interrupted {
            limit = Limit::Interrupted;
            break;
        }
        if held {
            good = Some(m);
        } else {
            bad = Some((m, generator));
            break;
        }
        if m >= opts.to {
            break;
        }
        m = (m * opts.factor).min(opts.to);
    }
    if let Some((mut hi, mut generator)) = bad {
        let mut lo = good;
        for _ in 0..opts.refine {
            let Some(l) = lo else { break };
            let mid = (l * hi).sqrt();
            if hi / l < 1.02 {
                break;
            }
            let (held, gen_mid, interrupted) = step_at(mid, &mut steps).await?;
            if interrupted {
                limit = Limit::Interrupted;
                break;
            }
            if held {
                lo = Some(mid);
            } else {
                hi = mid;
                generator = gen_mid;
            }
        }
        good = lo;
        if limit != Limit::Interrupted {
            limit = if generator {
                Limit::Generator
            } else {
                Limit::Target
            };
        }
        bad = Some((hi, generator));
    }
    // A load measured twice is judged by its second measurement.
    let pick = |m: Option<f64>| {
        m.and_then(|m| {
            steps
                .iter()
                .rfind(|s| (s.multiplier - m).abs() < 1e-9)
                .cloned()
        })
    };
    let mut sorted = steps.clone();
    // Stable: a load's measurements stay in the order they were taken.
    sorted.sort_by(|a, b| a.multiplier.total_cmp(&b.multiplier));
    Ok(Capacity {
        schema_version: 1,
        scenario: String::new(),
        target: String::new(),
        slos: opts.slos.iter().map(|t| t.text.clone()).collect(),
        sustainable: pick(good),
        broke: pick(bad.map(|b| b.0)),
        steps: sorted,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step at `m` as a measurement would return it: held, or broken for `why`.
    fn measured(m: f64, why: Option<&str>) -> Step {
        Step {
            multiplier: m,
            offered_per_s: 100.0 * m,
            messages_per_s: 100.0 * m,
            deliveries_per_s: 100.0 * m,
            users: 10,
            metric: "delivery".into(),
            p50_us: 1_000,
            p90_us: 2_000,
            p99_us: 3_000,
            max_us: 4_000,
            lost: 0,
            errors: 0,
            late_sends: 0,
            messages: 500,
            generator_cores: None,
            held: why.is_none(),
            why: why.map(str::to_string),
            bundle: String::new(),
        }
    }

    /// A search over a target that holds up to 3× the load, where the generator falls
    /// behind at the first `stalls` measurements past 2×; the multipliers measured.
    async fn search_with_stalls(stalls: usize) -> (Capacity, Vec<f64>) {
        let opts = CapacityOptions {
            slos: Vec::new(),
            from: 1.0,
            to: 8.0,
            factor: 2.0,
            refine: 3,
            step_time: crate::scenario::units::Micros(1),
            run: RunOptions::default(),
            out: PathBuf::new(),
        };
        let mut measured_at = Vec::new();
        let mut stalled = 0;
        let mut heard = 0;
        let c = searched(
            &opts,
            |_| heard += 1,
            async |m, index| {
                assert_eq!(index, measured_at.len() + 1, "steps are numbered in order");
                measured_at.push(m);
                if m > 2.0 && stalled < stalls {
                    stalled += 1;
                    return Ok((measured(m, Some("chatload fell behind")), true, false));
                }
                let why = (m > 3.0).then_some("delivery.p99 failed");
                Ok((measured(m, why), false, false))
            },
        )
        .await
        .unwrap();
        assert_eq!(heard, c.steps.len());
        (c, measured_at)
    }

    #[tokio::test]
    async fn a_load_the_generator_fell_behind_on_once_is_measured_again() {
        let (c, at) = search_with_stalls(1).await;
        // 1×, 2×, 4× (fell behind), 4× again (the target broke), then bisection, where
        // each load that breaks is measured twice: 2.83× held, 3.36× and 3.08× broke.
        assert_eq!(&at[..4], &[1.0, 2.0, 4.0, 4.0]);
        assert_eq!(at.len(), 9, "{at:?}");
        assert_eq!(c.limit, Limit::Target);
        let fours: Vec<&Step> = c.steps.iter().filter(|s| s.multiplier == 4.0).collect();
        assert_eq!(fours.len(), 2, "both measurements are in the report");
        assert_eq!(
            fours[0].why.as_deref(),
            Some("chatload fell behind; measured again")
        );
        assert_eq!(fours[1].why.as_deref(), Some("delivery.p99 failed"));
        let s = c.sustainable.expect("a load held");
        assert!((2.8..=3.0).contains(&s.multiplier), "{}", s.multiplier);
        assert_eq!(
            c.broke.expect("a load broke").why.as_deref(),
            Some("delivery.p99 failed")
        );
    }

    #[tokio::test]
    async fn falling_behind_twice_names_the_generator() {
        let (c, at) = search_with_stalls(usize::MAX).await;
        assert_eq!(c.limit, Limit::Generator);
        // Every load past 2× was measured twice, and each time it fell behind.
        assert_eq!(at.iter().filter(|m| **m > 2.0).count() % 2, 0, "{at:?}");
        assert_eq!(c.sustainable.expect("2× held").multiplier, 2.0);
        assert_eq!(
            c.broke.expect("a load broke").why.as_deref(),
            Some("chatload fell behind")
        );
    }

    #[tokio::test]
    async fn a_break_that_does_not_repeat_does_not_bound_the_search() {
        let opts = CapacityOptions {
            slos: Vec::new(),
            from: 1.0,
            to: 16.0,
            factor: 2.0,
            refine: 3,
            step_time: crate::scenario::units::Micros(1),
            run: RunOptions::default(),
            out: PathBuf::new(),
        };
        let mut at: Vec<f64> = Vec::new();
        // The target holds up to 6×; its first measurement at 4× saw a stall.
        let c = searched(
            &opts,
            |_| {},
            async |m, _| {
                at.push(m);
                let stalled = m == 4.0 && at.iter().filter(|x| **x == 4.0).count() == 1;
                let why = (stalled || m > 6.0).then_some("delivery.p99 failed");
                Ok((measured(m, why), false, false))
            },
        )
        .await
        .unwrap();
        assert_eq!(&at[..6], &[1.0, 2.0, 4.0, 4.0, 8.0, 8.0], "{at:?}");
        assert_eq!(c.limit, Limit::Target);
        let s = c.sustainable.as_ref().expect("a load held");
        assert!((5.6..=6.0).contains(&s.multiplier), "{}", s.multiplier);
        let once = c.breaks_not_repeated();
        assert_eq!(once.len(), 1);
        assert_eq!(once[0].multiplier, 4.0);
        let verdict = report::verdict(&c);
        assert!(
            verdict.ends_with(
                "; 1 load broke once and held when measured again (first at 4.00×: delivery.p99 failed)"
            ),
            "{verdict}"
        );
        // A load that broke twice (8×) is not among them.
        let eights = c.steps.iter().filter(|s| s.multiplier == 8.0).count();
        assert_eq!(eights, 2);
    }

    /// A completed step of `sent` messages, `late` of them late, with one SLO rule
    /// `delivery.p99 < 100ms` that passed or failed.
    fn step_summary(sent: u64, late: u64, slo_passed: bool) -> (Summary, Vec<Threshold>) {
        let mut s: Summary =
            serde_json::from_str(include_str!("../../tests/data/summary-min.json")).unwrap();
        s.accounting.messages_sent = sent;
        s.accounting.late_sends = late;
        s.accounting.lost = 0;
        s.errors_total = 0;
        let rule = crate::scenario::threshold::parse("delivery.p99", "< 100ms", &[]).unwrap();
        s.thresholds = vec![crate::report::summary::Verdict {
            rule: "delivery.p99 < 100ms".into(),
            passed: slo_passed,
            observed: Some(if slo_passed { 40.0 } else { 300.0 }),
            limit: 100.0,
            unit: "ms".into(),
            message: "delivery.p99 < 100ms failed".into(),
        }];
        (s, vec![rule])
    }

    #[test]
    fn a_short_stall_of_chatload_does_not_break_a_step_but_a_lagging_generator_does() {
        // 13 of 6,400 sends late (one 19 ms stall): the step held.
        let (s, slos) = step_summary(6_400, 13, true);
        assert_eq!(judge(&s, &slos), (true, None, false));
        // 64 of 6,400 is exactly the limit; 65 is past it: the generator.
        let (s, slos) = step_summary(6_400, 64, true);
        assert!(judge(&s, &slos).0);
        let (s, slos) = step_summary(6_400, 65, true);
        let (held, why, generator) = judge(&s, &slos);
        assert!(!held && generator, "{why:?}");
        assert!(why.unwrap().contains("65 late sends of 6400"));
        // A p99 broken while under 1% left late: the late sends cannot explain it.
        let (s, slos) = step_summary(6_400, 30, false);
        assert!(!judge(&s, &slos).2);
        // A p99 broken while 5% left late: chatload may have broken it itself.
        let (s, slos) = step_summary(6_400, 320, false);
        assert!(judge(&s, &slos).2);
    }

    #[test]
    fn a_step_with_deliveries_still_in_flight_did_not_hold() {
        let (mut s, slos) = step_summary(6_400, 0, true);
        s.accounting.in_flight = 12;
        let (held, why, generator) = judge(&s, &slos);
        assert!(!held && !generator, "{why:?}");
        assert!(why.unwrap().starts_with("12 deliveries still in flight"));
    }

    #[test]
    fn a_step_with_sends_never_acknowledged_did_not_hold() {
        let (mut s, slos) = step_summary(6_400, 0, true);
        s.accounting.unacknowledged = 7;
        let (held, why, generator) = judge(&s, &slos);
        assert!(!held && !generator, "{why:?}");
        assert_eq!(
            why.as_deref(),
            Some("7 of 6400 sends never acknowledged by the target")
        );
    }

    #[test]
    fn a_step_whose_connections_failed_on_chatloads_machine_names_the_generator() {
        // Even beside a broken SLO and losses: users it could not connect caused both.
        let (mut s, slos) = step_summary(6_400, 0, false);
        s.accounting.lost = 40;
        s.errors.insert("local_limit".into(), 300);
        s.errors_total = 300;
        let (held, why, generator) = judge(&s, &slos);
        assert!(!held && generator, "{why:?}");
        assert!(
            why.unwrap()
                .starts_with("300 connections failed on a limit of chatload's own machine")
        );
    }

    #[test]
    fn scaling_multiplies_rates_or_users() {
        let text = r#"
[scenario]
name = "s"
[population.consumers]
users = 100
groups = 10
[[pattern]]
kind = "direct_chat"
conversations = "2/min per user"
[[pattern]]
kind = "group_chat"
rate = "1/min per group"
[load]
stages = [{ ramp = "1s" }, { hold = "9s" }]
"#;
        let s = crate::scenario::parse(std::path::Path::new("s.toml"), text).unwrap();
        let d = scaled(&s, 3.0);
        let rate = |s: &Scenario, i: usize| match &s.patterns[i].kind {
            PatternKind::DirectChat { conversations, .. } => conversations.per_second,
            PatternKind::GroupChat { rate, .. } => rate.per_second,
            _ => 0.0,
        };
        assert!((rate(&d, 0) / rate(&s, 0) - 3.0).abs() < 1e-9);
        assert!((rate(&d, 1) / rate(&s, 1) - 3.0).abs() < 1e-9);
        assert_eq!(d.consumers.users, 100);
        let planned = |s: &Scenario| crate::plan::plan(s, None).mean.messages_per_s;
        assert!((planned(&d) / planned(&s) - 3.0).abs() < 1e-6);

        let closed = crate::scenario::parse(
            std::path::Path::new("c.toml"),
            "[scenario]\nname = \"c\"\n[population.consumers]\nusers = 10\ncontacts = 1\n[[pattern]]\nkind = \"closed_loop\"\n[load]\nstages = [{ ramp = \"1s\" }, { hold = \"1s\" }]\n",
        )
        .unwrap();
        assert_eq!(scaled(&closed, 2.5).consumers.users, 25);
    }
}

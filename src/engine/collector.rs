//! The run's 1 s collector: every second it drains the recorders' per-thread shards into the
//! run's totals, its one-second series and the interval log streamed to the bundle, updates
//! the live progress line, and (with `--abort-on-fail`) cancels the run's stop when a
//! threshold is clearly broken. Owns `Collected`; not what the numbers mean.

use super::context::RunContext;
use super::progress::Progress;
use crate::metrics::own_usage::OwnUsage;
use crate::metrics::{MetricSet, Series};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Totals and series, filled by the collector every second.
pub struct Collected {
    pub totals: MetricSet,
    pub series: Series,
    pub peak_connected: u64,
    pub hlog: crate::metrics::hlog::HlogWriter,
    /// chatload's own use at the last interval's end, for the next interval's CPU.
    pub own_last: Option<OwnUsage>,
}

pub fn collect_once(
    ctx: &RunContext,
    collected: &Mutex<Collected>,
    scratch: &mut MetricSet,
    t_s: f64,
) -> Option<crate::metrics::IntervalPoint> {
    ctx.recorders.drain_into(scratch);
    let connected = ctx.reach.connected();
    let mut c = collected.lock().ok()?;
    let start_s = c.series.points.last().map_or(0.0, |p| p.t_s);
    c.hlog.interval(scratch, start_s, (t_s - start_s).max(0.0));
    let own = OwnUsage::read();
    let cpu_s = own
        .zip(c.own_last)
        .map(|(now, last)| last.until(now).cpu_s());
    c.own_last = own;
    c.series.push(t_s, connected, scratch, cpu_s);
    c.totals.add(scratch);
    c.peak_connected = c.peak_connected.max(connected);
    scratch.clear();
    c.series.points.last().cloned()
}

/// The collected totals, series and log, taken out of the collector's share.
pub fn take_collected(collected: &Arc<Mutex<Collected>>) -> Collected {
    let mut c = collected.lock().unwrap_or_else(|p| p.into_inner());
    let patterns = c.totals.patterns();
    Collected {
        totals: std::mem::replace(&mut c.totals, MetricSet::new(patterns)),
        series: Series {
            interval_s: c.series.interval_s,
            points: std::mem::take(&mut c.series.points),
        },
        peak_connected: c.peak_connected,
        hlog: std::mem::replace(
            &mut c.hlog,
            crate::metrics::hlog::HlogWriter::new(std::time::SystemTime::now()),
        ),
        own_last: c.own_last,
    }
}

/// The 1 s collector: drains the recorders' shards into the totals, the series and the
/// interval log, updates the live line, and cancels the run's stop when `--abort-on-fail`
/// finds a threshold clearly broken. Ends once the users are finished.
pub fn spawn(
    ctx: Arc<RunContext>,
    collected: Arc<Mutex<Collected>>,
    quiet: bool,
    abort_on_fail: bool,
    stop: CancellationToken,
    aborted: Arc<OnceLock<String>>,
) -> tokio::task::JoinHandle<()> {
    let scenario = ctx.scenario.clone();
    let names: Vec<String> = scenario.patterns.iter().map(|p| p.name.clone()).collect();
    tokio::spawn(async move {
        let mut scratch = MetricSet::new(scenario.patterns.len());
        let mut progress = Progress::new(quiet, scenario.duration.as_secs_f64());
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(ctx.epoch() + Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        let mut delivered = 0u64;
        let mut errors = 0u64;
        loop {
            tick.tick().await;
            let t = ctx.epoch().elapsed().as_secs_f64().round();
            if let Some(point) = collect_once(&ctx, &collected, &mut scratch, t) {
                delivered += point.delivered;
                errors += point.errors;
                let phase = super::progress::phase_name(&scenario, ctx.now_us());
                progress.update(&point, phase, delivered, errors);
            }
            if abort_on_fail
                && aborted.get().is_none()
                && let Some(rule) = collected.lock().ok().and_then(|c| {
                    super::abort::clearly_broken(&scenario.thresholds, &c.totals, &names)
                })
            {
                let _ = aborted.set(rule);
                stop.cancel();
            }
            if ctx.finished.load(Relaxed) {
                progress.finish();
                break;
            }
        }
    })
}

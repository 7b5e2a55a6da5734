//! One run from start to report, in named phases (set up, connect, send, drain, settle,
//! report) under one cancellation token; then the bundle. Owns sequencing and what passes
//! from one phase to the next; the work of each phase lives in its own module (preflight,
//! goose_bridge, dispatcher, settle, report::summary).

use super::collector::{self, Collected};
use super::context::RunContext;
use super::options::{RunError, RunOptions};
use super::outcome::{self, Finished, RunResult};
use super::{dispatcher, goose_bridge, preflight, quiet, signals};
use crate::metrics::{Metric, MetricSet, Series};
use crate::report::summary::{Measured, Summary, TargetSummary};
use crate::report::{bundle, verdict};
use crate::scenario::Scenario;
use crate::server::{self, RunningServer};
use crate::transport::Connector;
use crate::transport::source::SourcePool;
use crate::workload::Population;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn apply_overrides(mut scenario: Scenario, opts: &RunOptions) -> Result<Scenario, RunError> {
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    if let Some(d) = opts.duration {
        scenario.stretch_to(d);
    }
    if let Some(t) = &opts.target {
        if !scenario.target.protocol.fits_url(t) {
            return Err(RunError::Setup(format!(
                "--target {} does not fit the scenario's protocol \"{}\"; give a URL of that protocol or set [target] protocol in the scenario",
                crate::secrets::redact_url(t),
                scenario.target.protocol.name()
            )));
        }
        scenario.target.url = Some(t.clone());
    }
    if let Some(ca) = &opts.ca_file {
        scenario.target.ca_file = Some(ca.clone());
    }
    Ok(scenario)
}

/// How long the pacer may take, after the profile's end, to hand out what was meant before
/// it (it needs microseconds unless its worker is held off the CPU).
const PACER_FINISH: Duration = Duration::from_secs(2);

/// One run, phase by phase. The phases run in this order, each one method of [`Run`]:
/// **set up** (target, pre-flight, population, business side, goose's plan), **connect**
/// (goose launches the users; time zero), **send** (the pacer hands out the schedule until
/// the profile ends), **drain** (deliveries still inside their deadline), **settle** (users
/// owed deliveries while offline come back; everything owed is classified; the users stop)
/// and **report** (the summary and its verdicts). What it returns, [`Finished`], is the
/// summary, the interval log and the bundle's staging folder (opened when users start, so
/// the log streams into it); writing the bundle is the caller's (`Finished::write_bundle`).
///
/// One cancellation token, `Run::stop`, ends the run early: a signal or a threshold clearly
/// broken (`--abort-on-fail`) cancels it, whichever of send, drain and settle is running
/// returns, and the run goes on to settle what it has and report. The sending phase's own
/// end (pacer, goaway storms) is a child of it.
/// The bundle's staging folder, or where and why it could not be made.
type Staging = Result<bundle::Staged, (PathBuf, std::io::Error)>;

pub async fn execute(scenario: Scenario, opts: &RunOptions) -> Result<Finished, RunError> {
    let mut run = Run::set_up(scenario, opts).await?;
    let staged = run.connect().await?;
    run.send().await;
    run.drain().await;
    run.settle().await;
    Ok(run.report(staged).await)
}

/// A run and then its bundle: [`execute`] followed by [`Finished::write_bundle`], for callers
/// that do nothing in between (tests, library users). The commands call the two themselves.
pub async fn run(scenario: Scenario, opts: &RunOptions) -> Result<RunResult, RunError> {
    execute(scenario, opts).await?.write_bundle()
}

/// The state a run carries from phase to phase.
struct Run {
    scenario: Arc<Scenario>,
    opts: RunOptions,
    started_at: chrono::DateTime<chrono::Utc>,
    url: String,
    http_base: Option<String>,
    native_url: Option<String>,
    embedded: Option<RunningServer>,
    population: Arc<Population>,
    ctx: Arc<RunContext>,
    business: Option<super::business::runtime::BusinessRuntime>,
    delivery_webhook: Option<super::delivery_webhook::DeliveryWebhook>,
    /// One per shard, each on its shard.
    pacers: Vec<dispatcher::Pacer>,
    attack: Option<goose::GooseAttack>,
    launches: goose_bridge::Launches,
    goose: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// goose ended by itself (it should not before the run ends it): what it said.
    goose_done: Option<Result<Result<(), String>, tokio::task::JoinError>>,
    /// The run's one stop: a signal or a clearly broken threshold cancels it.
    stop: CancellationToken,
    signal_watch: tokio::task::JoinHandle<()>,
    /// Which threshold was clearly broken, when `--abort-on-fail` ended the run.
    aborted: Arc<OnceLock<String>>,
    collected: Arc<Mutex<Collected>>,
    collector: Option<tokio::task::JoinHandle<()>>,
    sending_s: f64,
    /// The kernel's TCP counters as the users start connecting.
    tcp_before: Option<crate::metrics::kernel_tcp::KernelTcp>,
    /// chatload's own CPU as the users start connecting.
    own_before: Option<crate::metrics::own_usage::OwnUsage>,
    settled: bool,
    settlement: Option<crate::metrics::Settlement>,
}

impl Run {
    /// Set up: the target (the embedded server unless one is given), the connector and its
    /// pre-flight check, the population, the business side and webhooks, the schedule and
    /// goose's plan; a split run's segments then wait for their common start.
    async fn set_up(scenario: Scenario, opts: &RunOptions) -> Result<Run, RunError> {
        let scenario = Arc::new(apply_overrides(scenario, opts)?);
        let started_at = chrono::Utc::now();
        let mut embedded: Option<RunningServer> = None;
        let (url, http_base) = match &scenario.target.url {
            Some(u) => (u.clone(), None),
            None => {
                let s = server::start(
                    "127.0.0.1:0",
                    super::embedded::knobs(&scenario.target.server),
                )
                .await?;
                let urls = (s.url(), Some(s.http_url()));
                embedded = Some(s);
                urls
            }
        };
        let sources = SourcePool::for_target(
            &scenario.target.source_addresses,
            &url,
            scenario.consumers.online_users as u64,
        );
        let connections =
            opts.segment
                .members_of(opts.segment.index, scenario.consumers.online_users) as u64;
        let port_shortfall = crate::transport::source::shortfall(
            &sources,
            connections,
            &crate::secrets::redact_url(&url),
        );
        let connector = Connector::new(
            &scenario.target,
            &url,
            http_base.as_deref(),
            scenario.closed_loop().is_some(),
            sources,
        )
        .map_err(|e| RunError::Setup(e.to_string()))?;
        if let Some(shortfall) = port_shortfall.filter(|_| connector.connection_per_user()) {
            eprintln!("chatload: warning: {shortfall}");
        }
        let needed = population_fds(&scenario, embedded.is_some(), opts.segment);
        let limit = super::limits::raise_open_files();
        if needed > limit {
            return Err(RunError::Setup(format!(
                "{} connections need about {needed} open files but this process may open {limit}; raise the limit (ulimit -n) or run fewer users, or run `chatload serve` as a separate process",
                scenario.consumers.online_users
            )));
        }
        // Grown now, the descriptor table does not stall the runtime while users connect.
        crate::protocol::fd_table::reserve(needed);
        let segment = opts.segment;
        let population = Arc::new(
            Population::for_segment(&scenario, segment)
                .map_err(|e| RunError::Setup(e.to_string()))?,
        );
        // A pair's conversation is needed only where a template names it.
        let pairs = matches!(&scenario.target.protocol,
            crate::scenario::target::Protocol::Http(h)
                if h.uses(crate::scenario::template::Slot::ChatId));
        if let Some(ids) = connector.ids()
            && let Some(missing) =
                ids.missing(population.users(), population.groups().len(), pairs, |u| {
                    population.contacts(u)
                })
        {
            return Err(RunError::Setup(format!(
                "the ids file ([target.http] ids) has no id for {missing}; `chatload setup matrix` writes one for the whole population"
            )));
        }
        let prepared = preflight::prepare(
            &connector,
            &url,
            &population,
            scenario.target.connect_timeout.as_std(),
            segment,
        )
        .await?;
        let native_url = connector.native_url().map(str::to_string);

        let ctx = Arc::new(
            RunContext::new(scenario.clone(), population.clone(), connector)
                .map_err(|e| RunError::Setup(e.to_string()))
                .and_then(|mut c| {
                    c.segment = segment;
                    c.shards = super::shards::Shards::start(opts.shards, embedded.is_some())
                        .map_err(|e| {
                            RunError::Setup(format!("cannot start a shard thread: {e}"))
                        })?;
                    Ok(c)
                })?,
        );
        if prepared.earlier_runs > 0 {
            let mut rec = ctx.recorders.local();
            let slot = rec.no_pattern();
            rec.counters[slot].earlier_run += prepared.earlier_runs;
        }
        let business = match &native_url {
            Some(u) => super::business::runtime::start(&ctx, u, opts.webhook_listen.as_deref())
                .await
                .map_err(RunError::Setup)?,
            None => None,
        };
        let delivery_webhook = super::delivery_webhook::start_for_run(&ctx, opts.quiet).await?;
        let pacers = dispatcher::pacers(&ctx).await.map_err(RunError::Setup)?;
        quiet::install_logger();
        let stop = CancellationToken::new();
        let mut interrupts = signals::subscribe();
        // A signal cancels the run's stop, also one that came before this run started (between
        // two steps of a capacity search); the watch ends with the run (`report`).
        let signal_watch = {
            let stop = stop.clone();
            tokio::spawn(async move {
                // Only a count above zero is a signal.
                let signalled = interrupts.wait_for(|n| *n > 0);
                tokio::select! {
                    r = signalled => if r.is_ok() { stop.cancel() },
                    _ = stop.cancelled() => {}
                }
            })
        };
        let (attack, launches) =
            goose_bridge::build(ctx.clone()).map_err(|e| RunError::Setup(format!("goose: {e}")))?;
        if let Some(at) = opts.start_at {
            // Every segment of a split run waits for the same moment.
            if let Ok(wait) = (at - chrono::Utc::now()).to_std() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {
                        return Err(RunError::Setup("interrupted while waiting for --start-at".into()));
                    }
                }
            }
        }
        let collected = Arc::new(Mutex::new(Collected {
            totals: MetricSet::new(scenario.patterns.len()),
            series: Series {
                interval_s: 1.0,
                points: Vec::new(),
            },
            peak_connected: 0,
            hlog: crate::metrics::hlog::HlogWriter::new(std::time::SystemTime::now()),
            own_last: None,
        }));
        Ok(Run {
            scenario,
            opts: opts.clone(),
            started_at,
            url,
            http_base,
            native_url,
            embedded,
            population,
            ctx,
            business,
            delivery_webhook,
            pacers,
            attack: Some(attack),
            launches,
            goose: None,
            goose_done: None,
            stop,
            signal_watch,
            aborted: Arc::new(OnceLock::new()),
            collected,
            collector: None,
            sending_s: 0.0,
            tcp_before: None,
            own_before: None,
            settled: false,
            settlement: None,
        })
    }

    /// Connect: goose launches the users on the profile's ramp; time zero is when it starts
    /// (after it has allocated them). The bundle's staging folder opens and the interval
    /// log starts streaming into it; the folder (or why it could not be made) goes to the
    /// report phase.
    async fn connect(&mut self) -> Result<Staging, RunError> {
        let Some(attack) = self.attack.take() else {
            return Err(RunError::Setup(
                "the run's users were already launched".into(),
            ));
        };
        self.tcp_before = crate::metrics::kernel_tcp::KernelTcp::read();
        self.own_before = crate::metrics::own_usage::OwnUsage::read();
        let mut goose = tokio::spawn(async move {
            let _muted = quiet::StdoutMuted::new();
            attack
                .execute()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        tokio::select! {
            _ = self.ctx.started.notified() => {}
            r = &mut goose => {
                let why = match r {
                    Ok(Err(e)) => e,
                    _ => "it stopped before starting".to_string(),
                };
                return Err(RunError::Setup(format!(
                    "goose could not start the virtual users: {why}"
                )));
            }
        }
        self.goose = Some(goose);
        let (hlog, staged) = outcome::open_hlog(&self.opts, &self.scenario.name, self.started_at);
        if let Ok(mut c) = self.collected.lock() {
            c.own_last = self.own_before;
            c.hlog = hlog;
        }
        Ok(staged)
    }

    /// Send: the 1 s collector, the pacer and the goaway storms run until the profile ends
    /// (or the run is stopped, or goose ends by itself); then what was handed out but never
    /// sent is counted with its reason.
    async fn send(&mut self) {
        let ctx = self.ctx.clone();
        self.collector = Some(collector::spawn(
            ctx.clone(),
            self.collected.clone(),
            self.opts.quiet,
            self.opts.abort_on_fail || self.scenario.abort_on_fail,
            self.stop.clone(),
            self.aborted.clone(),
        ));
        let sending = self.stop.child_token();
        let goaways = tokio::spawn(super::goaway_storms::run(
            ctx.clone(),
            self.native_url.clone(),
            sending.clone(),
        ));
        let pacing: Vec<_> = std::mem::take(&mut self.pacers)
            .into_iter()
            .map(|pacer| {
                let shard = pacer.shard();
                ctx.shards
                    .spawn(shard, dispatcher::run(ctx.clone(), pacer, sending.clone()))
            })
            .collect();
        let mut pacers = futures_util::future::join_all(pacing);
        let send_end = tokio::time::Instant::from_std(ctx.instant_at(ctx.profile.end().0));
        let mut profile_ended = false;
        if let Some(goose) = self.goose.as_mut() {
            tokio::select! {
                _ = tokio::time::sleep_until(send_end) => profile_ended = true,
                _ = self.stop.cancelled() => {}
                r = goose => self.goose_done = Some(r),
            }
        }
        // At the profile's end the pacer is not cut at the wall-clock moment: its schedule
        // ends there, so it returns by itself once it has handed out every order meant before
        // it. A pacer held off a busy CPU for a few milliseconds would otherwise lose
        // the last orders, and a split run's segments would send one message fewer than the
        // whole run (seen once in CI: 988 against 989).
        let finished = if profile_ended {
            tokio::time::timeout(PACER_FINISH, &mut pacers).await.ok()
        } else {
            None
        };
        sending.cancel();
        let rests: Vec<_> = match finished {
            Some(_) => Vec::new(),
            None => pacers.await.into_iter().filter_map(Result::ok).collect(),
        };
        let _ = goaways.await;
        // No more business orders: the client finishes what it has (bounded by its timeouts).
        ctx.close_business_orders();
        self.sending_s = ctx.epoch().elapsed().as_secs_f64();
        // Cut at the profile's end, still behind: the rest of its schedule was the scenario's
        // load too. Counted after the sending time is taken, since counting sends nothing.
        if profile_ended && !self.stop.is_cancelled() {
            for rest in rests {
                dispatcher::count_unreached(&ctx, rest).await;
            }
        }
        // What the schedule handed out but no sender could say is not sent, with its reason.
        super::settle::count_unsent_orders(&ctx);
    }

    /// Whether the run may go on waiting: not stopped, and goose still holds the users.
    fn going_on(&self) -> bool {
        self.goose_done.is_none() && !self.stop.is_cancelled()
    }

    /// Drain: wait for deliveries that may still arrive in time, bounded by `drain`.
    async fn drain(&mut self) {
        if self.going_on() {
            let until = Instant::now() + self.scenario.drain.as_std();
            self.settled = super::settle::drain(&self.ctx, until, &self.stop).await;
        }
    }

    /// Settle: bring back the users owed deliveries while offline to collect them; classify
    /// everything still owed; stop the users and goose.
    async fn settle(&mut self) {
        if self.settled && self.going_on() {
            self.settled = super::settle::bring_back_offline(&self.ctx, &self.stop).await;
        } else {
            self.settled = false;
        }
        let end_us = self.ctx.now_us();
        self.settlement = Some(super::settle::classify(&self.ctx, end_us, self.settled));
        // Every user's task now tells goose it is done, and goose ends this attack by itself.
        self.ctx.finish();
        if !self.launches.all_launched() {
            // Stopped before goose's plan launched every user: goose would go on launching
            // them. goose 0.19 has no per-attack stop for that, only its process-wide
            // killswitch; this is its one use (a signal or --abort-on-fail during the ramp).
            goose::trigger_killswitch("chatload: run stopped during the ramp");
        }
        if let Some(mut goose) = self.goose.take() {
            if self.goose_done.is_none() {
                self.goose_done = tokio::time::timeout(Duration::from_secs(30), &mut goose)
                    .await
                    .ok();
            }
            goose.abort();
        }
        // Every user has closed (or goose was given up on): the shards' threads end.
        self.ctx.shards.stop();
        if let Some(Ok(Err(e))) = &self.goose_done {
            eprintln!("chatload: goose reported: {e}");
        }
    }

    /// Report: the last interval collected, the side services and the embedded server shut
    /// down, the summary built and its thresholds judged.
    async fn report(mut self, staged: Staging) -> Finished {
        // Stopped early: by a signal, a clearly broken threshold, or a drain or settle cut
        // short by either.
        let interrupted = self.stop.is_cancelled();
        self.signal_watch.abort();
        self.ctx.note_ids_reached();
        if let Some(collector) = self.collector.take() {
            let _ = collector.await;
        }
        let ctx = &self.ctx;
        let scenario = &self.scenario;
        let mut scratch = MetricSet::new(scenario.patterns.len());
        collector::collect_once(
            ctx,
            &self.collected,
            &mut scratch,
            crate::report::summary::round3(ctx.epoch().elapsed().as_secs_f64()),
        );
        let webhook_redelivered = self.delivery_webhook.take().map_or(0, |w| w.stop());
        if let Some(b) = self.business.take() {
            b.client.stop();
            let _ = tokio::time::timeout(Duration::from_secs(2), b.task).await;
            b.receiver.stop();
        }
        let server_stats = self.embedded.as_ref().map(|s| s.stats());
        if let Some(s) = self.embedded.take() {
            s.shutdown().await;
        }
        let collected = collector::take_collected(&self.collected);
        let settlement = self.settlement.take().unwrap_or_default();
        let segment = self.opts.segment;
        let url = &self.url;
        let mut summary = Summary::build(Measured {
            scenario,
            totals: &collected.totals,
            settlement: &settlement,
            series: collected.series,
            started_at: self
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration_s: self.sending_s,
            interrupted,
            signal: super::signals::exit_code()
                .is_some()
                .then(|| super::signals::name(super::signals::last_signal())),
            schedule_uncounted_from_s: match ctx
                .schedule_uncounted_from_us
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                0 => None,
                us => Some(us as f64 / 1e6),
            },
            target: TargetSummary {
                url: crate::secrets::redact_url(match &scenario.target.protocol {
                    crate::scenario::target::Protocol::Http(_) => {
                        self.http_base.as_deref().unwrap_or(url)
                    }
                    _ => url,
                }),
                embedded: scenario.target.url.is_none(),
                protocol: scenario.target.protocol.name().to_string(),
                webhook_redelivered,
            },
            users: segment.members_of(segment.index, self.population.users()),
            peak_connected: collected.peak_connected,
            server: server_stats,
            tcp: self
                .tcp_before
                .zip(crate::metrics::kernel_tcp::KernelTcp::read())
                .map(|(before, after)| before.until(after)),
            own: self
                .own_before
                .zip(crate::metrics::own_usage::OwnUsage::read())
                .map(|(before, after)| before.until(after)),
        });
        if let Some(m) = summary.machine.as_mut().filter(|_| ctx.shards.count() > 1) {
            // The runtime's one worker is shard 0.
            m.workers = Some(ctx.shards.count());
        }
        let names: Vec<String> = scenario.patterns.iter().map(|p| p.name.clone()).collect();
        let totals = &collected.totals;
        let percentile = |pattern: Option<&str>, metric: &str, q: f64| -> Option<u64> {
            let m = Metric::from_name(metric)?;
            let h = match pattern {
                Some(p) => totals
                    .histogram(names.iter().position(|n| n == p)?, m)
                    .cloned(),
                None => totals.merged(m),
            }?;
            (!h.is_empty()).then(|| h.value_at_quantile(q / 100.0))
        };
        // Loss over time: each lost delivery in the interval its message was meant to leave.
        for p in &mut summary.series.points {
            let k = (p.t_s.ceil() as usize).saturating_sub(1);
            p.lost = settlement.lost_by_second.get(k).copied().unwrap_or(0);
        }
        let epoch_wall = chrono::Utc::now()
            - chrono::Duration::from_std(ctx.epoch().elapsed()).unwrap_or_default();
        summary.epoch_unix_ms = epoch_wall.timestamp_micros() as f64 / 1000.0;
        if !segment.is_whole() {
            summary.segment = Some(crate::report::summary::SegmentRun {
                index: segment.index,
                count: segment.count,
                start_at: self
                    .opts
                    .start_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                start_offset_ms: self
                    .opts
                    .start_at
                    .map(|t| (epoch_wall - t).num_microseconds().unwrap_or(0) as f64 / 1000.0),
            });
        }
        summary.thresholds = verdict::judge(&summary, &scenario.thresholds, &percentile);
        summary.passed = summary.thresholds.iter().all(|v| v.passed);
        if let Some(rule) = self.aborted.get() {
            summary.ended = format!("aborted: {rule} is clearly broken");
            summary.passed = false;
        }
        let mut hlog = collected.hlog;
        let log = hlog.finish(&scenario.name);
        Finished {
            summary,
            log,
            staged,
        }
    }
}

/// File descriptors a run needs: one per virtual user, twice with the embedded server.
fn population_fds(s: &Scenario, embedded: bool, segment: crate::workload::Segment) -> u64 {
    let users = segment.members_of(segment.index, s.consumers.online_users) as u64;
    users * if embedded { 2 } else { 1 } + 64
}

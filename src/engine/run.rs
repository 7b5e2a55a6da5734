//! One run from start to report: target (embedded or given), pre-flight check, groups,
//! goose-driven virtual users, the pacer, the 1 s collector, the end (schedule done or
//! Ctrl-C), the drain of in-flight deliveries, settlement and the bundle. Owns sequencing.

use super::context::RunContext;
use super::progress::Progress;
use super::{dispatcher, goose_bridge, preflight, quiet, signals};
use crate::metrics::{Metric, MetricSet, Series};
use crate::report::summary::{Measured, Summary, TargetSummary};
use crate::report::{bundle, verdict};
use crate::scenario::{Scenario, units::Micros};
use crate::server::{self, RunningServer};
use crate::transport::Connector;
use crate::transport::source::SourcePool;
use crate::workload::{Population, Schedule};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the command line may change about a scenario run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub target: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub duration: Option<Micros>,
    pub seed: Option<u64>,
    /// Write the bundle straight into this folder.
    pub out: Option<PathBuf>,
    /// Where default bundle folders go (`reports/`).
    pub reports_root: PathBuf,
    pub quiet: bool,
    /// End the run early when a threshold is clearly broken.
    pub abort_on_fail: bool,
    /// This process's share of a run split across machines.
    pub segment: crate::workload::Segment,
    /// Start sending at this time (every segment of a split run together).
    pub start_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the business webhook receiver listens (default: loopback, a free port).
    pub webhook_listen: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the target {url} is not reachable ({detail}); start your server or check --target")]
    Unreachable { url: String, detail: String },
    /// Something answered at the target, but the first session could not be set up.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Server(#[from] server::BindError),
    #[error("cannot set up the run: {0}")]
    Setup(String),
    /// The run finished but its bundle could not be written: the summary is still here, so
    /// the console can show it.
    #[error("{error}")]
    Bundle {
        error: bundle::BundleError,
        summary: Box<Summary>,
    },
}

pub struct RunResult {
    pub summary: Summary,
    pub bundle_dir: PathBuf,
}

fn apply_overrides(mut scenario: Scenario, opts: &RunOptions) -> Result<Scenario, RunError> {
    if let Some(seed) = opts.seed {
        scenario.seed = seed;
    }
    if let Some(d) = opts.duration {
        let old = scenario.duration.0.max(1) as f64;
        let factor = d.0 as f64 / old;
        for s in &mut scenario.stages {
            s.length = Micros((s.length.0 as f64 * factor).round() as u64);
        }
        scenario.duration = Micros(scenario.stages.iter().map(|s| s.length.0).sum());
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

/// Totals and series, filled by the collector every second.
struct Collected {
    totals: MetricSet,
    series: Series,
    peak_connected: u64,
    hlog: crate::metrics::hlog::HlogWriter,
}

fn collect_once(
    ctx: &RunContext,
    collected: &Mutex<Collected>,
    scratch: &mut MetricSet,
    t_s: f64,
) -> Option<crate::metrics::IntervalPoint> {
    ctx.recorders.drain_into(scratch);
    let connected = ctx.connected_count.load(Relaxed);
    let mut c = collected.lock().ok()?;
    let start_s = c.series.points.last().map_or(0.0, |p| p.t_s);
    c.hlog.interval(scratch, start_s, (t_s - start_s).max(0.0));
    c.series.push(t_s, connected, scratch);
    c.totals.add(scratch);
    c.peak_connected = c.peak_connected.max(connected);
    scratch.clear();
    c.series.points.last().cloned()
}

pub async fn run(scenario: Scenario, opts: &RunOptions) -> Result<RunResult, RunError> {
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
    let connector = Connector::new(
        &scenario.target,
        &url,
        http_base.as_deref(),
        scenario.closed_loop().is_some(),
        sources,
    )
    .map_err(|e| RunError::Setup(e.to_string()))?;
    let needed = population_fds(&scenario, embedded.is_some(), opts.segment);
    let limit = super::limits::raise_open_files();
    if needed > limit {
        return Err(RunError::Setup(format!(
            "{} connections need about {needed} open files but this process may open {limit}; raise the limit (ulimit -n) or run fewer users, or run `chatload serve` as a separate process",
            scenario.consumers.online_users
        )));
    }
    let segment = opts.segment;
    let population = Arc::new(
        Population::for_segment(&scenario, segment).map_err(|e| RunError::Setup(e.to_string()))?,
    );
    preflight::prepare(
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
            .map(|mut c| {
                c.segment = segment;
                c
            })
            .map_err(|e| RunError::Setup(e.to_string()))?,
    );
    let business = match &native_url {
        Some(u) => start_business(&ctx, u, opts.webhook_listen.as_deref()).await?,
        None => None,
    };
    let delivery_webhook = match &scenario.target.protocol {
        crate::scenario::target::Protocol::Http(h) => match &h.deliveries {
            crate::scenario::target::HttpDeliveries::Webhook(w) => {
                let listener = super::delivery_webhook::start(ctx.clone(), w)
                    .await
                    .map_err(|e| {
                        RunError::Setup(format!(
                            "cannot listen for delivery webhooks at {} ({e}); choose another `listen` address",
                            w.listen
                        ))
                    })?;
                if !opts.quiet {
                    eprintln!(
                        "chatload: delivery webhooks are taken at http://{}/",
                        listener.addr
                    );
                }
                Some(listener)
            }
            _ => None,
        },
        _ => None,
    };
    let schedule = Schedule::new(scenario.clone(), population.clone(), ctx.profile.clone())
        .map_err(|e| RunError::Setup(e.to_string()))?;
    quiet::install_logger();
    signals::reset();
    let mut interrupts = signals::subscribe();
    let attack =
        goose_bridge::build(ctx.clone()).map_err(|e| RunError::Setup(format!("goose: {e}")))?;
    if let Some(at) = opts.start_at {
        // Every segment of a split run waits for the same moment.
        if let Ok(wait) = (at - chrono::Utc::now()).to_std() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = interrupts.changed() => {
                    return Err(RunError::Setup("interrupted while waiting for --start-at".into()));
                }
            }
        }
    }

    let mut goose_task = tokio::spawn(async move {
        let _muted = quiet::StdoutMuted::new();
        attack
            .execute()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    // Time zero is when goose starts launching users (after it has allocated them).
    let mut goose_done = None;
    tokio::select! {
        _ = ctx.started.notified() => {}
        r = &mut goose_task => goose_done = Some(r),
    }
    if let Some(r) = &goose_done {
        let why = match r {
            Ok(Err(e)) => e.clone(),
            _ => "it stopped before starting".to_string(),
        };
        return Err(RunError::Setup(format!(
            "goose could not start the virtual users: {why}"
        )));
    }

    let stop_pacer = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hlog, staged) = open_hlog(opts, &scenario.name, started_at);
    let collected = Arc::new(Mutex::new(Collected {
        totals: MetricSet::new(scenario.patterns.len()),
        series: Series {
            interval_s: 1.0,
            points: Vec::new(),
        },
        peak_connected: 0,
        hlog,
    }));
    let aborted: Arc<std::sync::OnceLock<String>> = Arc::new(std::sync::OnceLock::new());
    let abort_now = Arc::new(tokio::sync::Notify::new());
    let collector = {
        let (ctx, collected, scenario) = (ctx.clone(), collected.clone(), scenario.clone());
        let quiet = opts.quiet;
        let (aborted, abort_now) = (aborted.clone(), abort_now.clone());
        let abort_on_fail = opts.abort_on_fail || scenario.abort_on_fail;
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
                    abort_now.notify_one();
                }
                if ctx.finished.load(Relaxed) {
                    progress.finish();
                    break;
                }
            }
        })
    };
    let goaways = tokio::spawn(server_storms(ctx.clone(), native_url.clone()));
    let pacer = {
        let (ctx, stop) = (ctx.clone(), stop_pacer.clone());
        tokio::task::spawn_blocking(move || dispatcher::run(ctx, schedule, stop))
    };

    // Sending phase: until the profile ends, Ctrl-C, or goose stopping on its own.
    let send_end = tokio::time::Instant::from_std(ctx.instant_at(ctx.profile.end().0));
    let mut interrupted = false;
    tokio::select! {
        _ = tokio::time::sleep_until(send_end) => {}
        _ = interrupts.changed() => interrupted = true,
        _ = abort_now.notified() => interrupted = true,
        r = &mut goose_task => goose_done = Some(r),
    }
    stop_pacer.store(true, Relaxed);
    let _ = pacer.await;
    goaways.abort();
    // No more business orders: the client finishes what it has (bounded by its timeouts).
    ctx.close_business_orders();
    let sending_s = ctx.epoch().elapsed().as_secs_f64();

    // What the schedule handed out but no sender could say is not sent, with its reason.
    super::settle::count_unsent_orders(&ctx);

    // Drain: wait for deliveries that may still arrive in time, bounded by `drain`; then
    // settle: bring back the users owed deliveries while offline to collect them.
    let mut settled = false;
    if goose_done.is_none() && !interrupted {
        let drain_until = Instant::now() + scenario.drain.as_std();
        settled = super::settle::drain(&ctx, drain_until, &mut interrupts).await
            && super::settle::bring_back_offline(&ctx, &mut interrupts).await;
        interrupted = !settled;
    }
    let end_us = ctx.now_us();
    let settlement = super::settle::classify(&ctx, end_us, settled);
    ctx.finish();
    goose::trigger_killswitch("chatload: run complete");
    if goose_done.is_none() {
        goose_done = tokio::time::timeout(Duration::from_secs(30), &mut goose_task)
            .await
            .ok();
    }
    goose_task.abort();
    if let Some(Ok(Err(e))) = &goose_done {
        eprintln!("chatload: goose reported: {e}");
    }
    let _ = collector.await;

    let mut scratch = MetricSet::new(scenario.patterns.len());
    collect_once(
        &ctx,
        &collected,
        &mut scratch,
        crate::report::summary::round3(ctx.epoch().elapsed().as_secs_f64()),
    );
    if let Some(w) = delivery_webhook {
        w.stop();
    }
    if let Some(b) = business {
        b.client.stop();
        let _ = tokio::time::timeout(Duration::from_secs(2), b.task).await;
        b.receiver.stop();
    }
    let server_stats = embedded.as_ref().map(|s| s.stats());
    if let Some(s) = embedded {
        s.shutdown().await;
    }

    let collected = match Arc::try_unwrap(collected) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(arc) => {
            let mut c = arc.lock().unwrap_or_else(|p| p.into_inner());
            Collected {
                totals: c.totals.clone(),
                series: c.series.clone(),
                peak_connected: c.peak_connected,
                hlog: std::mem::replace(
                    &mut c.hlog,
                    crate::metrics::hlog::HlogWriter::new(std::time::SystemTime::now()),
                ),
            }
        }
    };
    let mut summary = Summary::build(Measured {
        scenario: &scenario,
        totals: &collected.totals,
        settlement: &settlement,
        series: collected.series,
        started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_s: sending_s,
        interrupted,
        signal: super::signals::exit_code()
            .is_some()
            .then(|| super::signals::name(super::signals::last_signal())),
        target: TargetSummary {
            url: crate::secrets::redact_url(match &scenario.target.protocol {
                crate::scenario::target::Protocol::Http(_) => http_base.as_deref().unwrap_or(&url),
                _ => &url,
            }),
            embedded: scenario.target.url.is_none(),
            protocol: scenario.target.protocol.name().to_string(),
        },
        users: segment.members_of(segment.index, population.users()),
        peak_connected: collected.peak_connected,
        server: server_stats,
    });
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
    let epoch_wall =
        chrono::Utc::now() - chrono::Duration::from_std(ctx.epoch().elapsed()).unwrap_or_default();
    summary.epoch_unix_ms = epoch_wall.timestamp_micros() as f64 / 1000.0;
    if !segment.is_whole() {
        summary.segment = Some(crate::report::summary::SegmentRun {
            index: segment.index,
            count: segment.count,
            start_at: opts
                .start_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            start_offset_ms: opts
                .start_at
                .map(|t| (epoch_wall - t).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        });
    }
    summary.thresholds = verdict::judge(&summary, &scenario.thresholds, &percentile);
    summary.passed = summary.thresholds.iter().all(|v| v.passed);
    if let Some(rule) = aborted.get() {
        summary.ended = format!("aborted: {rule} is clearly broken");
        summary.passed = false;
    }

    let mut hlog = collected.hlog;
    let log = hlog.finish(&scenario.name);
    let written = staged
        .map_err(|(at, source)| bundle::BundleError {
            path: at.display().to_string(),
            source,
        })
        .and_then(|staged| bundle::write_staged(staged, &summary, log.as_deref()));
    match written {
        Ok(bundle_dir) => Ok(RunResult {
            summary,
            bundle_dir,
        }),
        Err(error) => Err(RunError::Bundle {
            error,
            summary: Box::new(summary),
        }),
    }
}

/// The bundle's staging folder, and the interval log streamed into it as the run goes (kept
/// in memory if the folder cannot be made; writing the bundle at the end then reports the
/// problem). The bundle goes to `--out`, or to a `reports/<scenario>-<UTC time>/` of this
/// run's own, when it is whole.
fn open_hlog(
    opts: &RunOptions,
    scenario: &str,
    started_at: chrono::DateTime<chrono::Utc>,
) -> (
    crate::metrics::hlog::HlogWriter,
    Result<bundle::Staged, (PathBuf, std::io::Error)>,
) {
    let now = std::time::SystemTime::now();
    let base = bundle::default_dir(&opts.reports_root, scenario, started_at);
    let staged = bundle::Staged::new(opts.out.as_deref(), &base)
        .map_err(|e| (opts.out.clone().unwrap_or(base), e));
    let Ok(s) = &staged else {
        return (crate::metrics::hlog::HlogWriter::new(now), staged);
    };
    // From here until the bundle is complete, an exit at once takes the staging folder away.
    bundle::begin(s.dir());
    let hlog =
        crate::metrics::hlog::HlogWriter::streaming(&s.dir().join("latency.hlog"), now, scenario)
            .unwrap_or_else(|_| crate::metrics::hlog::HlogWriter::new(now));
    (hlog, staged)
}

/// Graceful reconnect storms are the server's to carry out: at each one's time, ask the
/// target (chatload's reference server admin API) to send `goaway` to the storm's users.
async fn server_storms(ctx: Arc<RunContext>, ws_url: Option<String>) {
    let Some(admin) = ws_url.and_then(|u| super::admin::AdminClient::new(&u).ok()) else {
        return;
    };
    for storm in ctx.storms.iter().filter(|s| s.goaway) {
        tokio::time::sleep_until(ctx.instant_at(storm.at_us).into()).await;
        if admin
            .goaway(storm.pattern, storm.fraction, ctx.scenario.seed)
            .await
            .is_err()
        {
            ctx.recorders
                .local()
                .error(crate::metrics::ErrorKind::Http, || {
                    format!(
                        "the target at {} did not carry out the goaway storm (POST /admin/goaway)",
                        admin.base()
                    )
                });
        }
    }
}

/// The business side of a run: chatload's API client and its webhook receiver.
struct BusinessRuntime {
    client: Arc<super::business::client::BusinessClient>,
    task: tokio::task::JoinHandle<()>,
    receiver: super::business::webhook::WebhookReceiver,
}

/// Starts the webhook receiver, tells the target the limits and where to post webhooks, and
/// starts the API client, when the scenario has business patterns.
async fn start_business(
    ctx: &Arc<RunContext>,
    ws_url: &str,
    listen: Option<&str>,
) -> Result<Option<BusinessRuntime>, RunError> {
    let s = &ctx.scenario;
    if !s.patterns.iter().any(|p| p.kind.is_business()) {
        return Ok(None);
    }
    let base = super::business::http_base(ws_url);
    let listen = listen.unwrap_or("127.0.0.1:0");
    let receiver = super::business::webhook::start(ctx.clone(), listen)
        .await
        .map_err(|e| {
            RunError::Setup(format!(
                "cannot listen for business webhooks at {listen} ({e}); choose another --webhook-listen"
            ))
        })?;
    let admin = super::admin::AdminClient::new(ws_url).map_err(RunError::Setup)?;
    let b = s.businesses;
    let setup = |what: &str, e: String| {
        RunError::Setup(format!(
            "the target's business API at {base} refused {what} ({e}); business patterns need chatload's reference server or one that speaks its admin API"
        ))
    };
    admin
        .configure(&super::admin::BusinessLimits {
            throughput_mps: b.throughput_mps,
            messaging_limit: b.messaging_limit,
            window_ms: b.window.0 / 1000,
            pair_interval_ms: b.pair_interval.0 / 1000,
            pair_burst: b.pair_burst,
        })
        .await
        .map_err(|e| setup("the limits", e))?;
    for n in 0..b.count {
        admin
            .register_webhook(n, &receiver.url(), ctx.segment)
            .await
            .map_err(|e| setup("the webhook registration", e))?;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(65_536);
    ctx.open_business_orders(tx);
    let client = Arc::new(
        super::business::client::BusinessClient::new(ctx.clone(), base).map_err(RunError::Setup)?,
    );
    Ok(Some(BusinessRuntime {
        task: tokio::spawn(client.clone().run(rx)),
        client,
        receiver,
    }))
}

/// File descriptors a run needs: one per virtual user, twice with the embedded server.
fn population_fds(s: &Scenario, embedded: bool, segment: crate::workload::Segment) -> u64 {
    let users = segment.members_of(segment.index, s.consumers.online_users) as u64;
    users * if embedded { 2 } else { 1 } + 64
}

//! The business API client: carries out the schedule's business orders (templates, replies,
//! mark-read, late replies) as HTTP requests, and reacts to refusals as the pattern says
//! (docs/workloads.md §1.4): on 130429 slow to the tier with a token bucket, on 131056 retry after
//! 4^x seconds, on 5xx and timeouts retry with jittered exponential backoff. Requests go on
//! the lean pooled HTTP/1.1 connections (`transport::http1_pool`), so an answer's latency
//! ends when it arrived, not when this client got round to reading it. Owns requests and
//! their accounting at send time; statuses are joined by `webhook`.

use crate::engine::context::RunContext;
use crate::metrics::{ErrorKind, LATE_SEND_US, Metric, NotSentReason, Owed};
use crate::protocol::keyed;
use crate::protocol::{BUSINESS_BASE, Recipient, filler_body};
use crate::scenario::{ApiClientPolicy, PatternKind};
use crate::server::business::{correlation, inbound_wamid};
use crate::transport::http1::{Endpoint, write_request};
use crate::transport::http1_pool::Http1Pool;
use crate::transport::tls::TlsContext;
use crate::workload::schedule::{Action, Order};
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};

/// Requests in flight at most; beyond it orders wait (and show up as late sends).
const IN_FLIGHT: usize = 1_024;

/// The longest answer read: a refusal's JSON names its code in far less.
const MAX_ANSWER: usize = 64 << 10;

/// One business number's client-side pacing, switched on by the first 130429.
#[derive(Debug, Default)]
struct TierPacer {
    active: bool,
    next_free: Option<Instant>,
}

pub struct BusinessClient {
    ctx: Arc<RunContext>,
    /// The business API's host: every request goes to it.
    pool: Arc<Http1Pool>,
    pacers: Vec<Mutex<TierPacer>>,
    tier_interval: Duration,
    /// The run is over: stop taking orders; what is still queued was not sent.
    stop: tokio::sync::Notify,
}

/// What one attempt came back with.
enum Outcome {
    Accepted,
    Refused { http: u16, code: u64 },
    TimedOut,
    Failed(String),
}

impl BusinessClient {
    pub fn new(ctx: Arc<RunContext>, base: String) -> Result<Self, String> {
        let tls =
            TlsContext::new(ctx.scenario.target.ca_file.as_deref()).map_err(|e| e.to_string())?;
        let endpoint = Endpoint::parse(&base, &tls).ok_or_else(|| {
            format!(
                "the business API's address {} is not http://host:port or https://host:port",
                crate::secrets::redact_url(&base)
            )
        })?;
        // Each request gives its pattern's own timeout; this one is never used.
        let pool = Arc::new(Http1Pool::new(
            Arc::new(endpoint),
            Duration::from_secs(30),
            None,
            false,
            MAX_ANSWER,
        ));
        let businesses = ctx.scenario.businesses;
        Ok(BusinessClient {
            pacers: (0..businesses.count.max(1))
                .map(|_| Mutex::new(TierPacer::default()))
                .collect(),
            // A split run's segments share each number's tier: each slows to its share.
            tier_interval: Duration::from_secs_f64(
                f64::from(ctx.segment.count) / businesses.throughput_mps.max(1e-3),
            ),
            ctx,
            pool,
            stop: tokio::sync::Notify::new(),
        })
    }

    /// Ends `run`: orders not taken yet are counted as not sent (chatload held them back).
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    fn count_not_sent(&self, order: Option<Order>, orders: &mut mpsc::Receiver<Order>) {
        let mut rec = self.ctx.recorders.local();
        for o in order
            .into_iter()
            .chain(std::iter::from_fn(|| orders.try_recv().ok()))
        {
            if o.action.is_message() {
                rec.counters[o.pattern as usize].not_sent_for(NotSentReason::Behind);
            }
        }
    }

    /// Takes orders until the channel closes, each in its own task.
    pub async fn run(self: Arc<Self>, mut orders: mpsc::Receiver<Order>) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let order = tokio::select! {
                o = orders.recv() => match o {
                    Some(o) => o,
                    None => break,
                },
                _ = self.stop.notified() => return self.count_not_sent(None, &mut orders),
            };
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = self.stop.notified() => return self.count_not_sent(Some(order), &mut orders),
            };
            let me = self.clone();
            tasks.spawn(async move {
                me.execute(order).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        // Requests still running finish (bounded by their timeouts and retries) unless the
        // run ends first; dropping the set then aborts them.
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = self.stop.notified() => break,
            }
        }
    }

    fn policy(&self, pattern: u16) -> ApiClientPolicy {
        match &self.ctx.scenario.patterns[pattern as usize].kind {
            PatternKind::BusinessBroadcast { client, .. }
            | PatternKind::SupportConversation { client, .. }
            | PatternKind::OtpBurst { client, .. } => *client,
            _ => ApiClientPolicy {
                slow_to_tier: true,
                pair_backoff: true,
                retry_base: crate::scenario::units::Micros(250_000),
                max_retries: 5,
                timeout: crate::scenario::units::Micros(10_000_000),
            },
        }
    }

    /// Waits for this number's next turn under its tier, once a 130429 has switched pacing
    /// on; true when it had to wait.
    async fn pace(&self, business: u32) -> bool {
        let wait_until = {
            let Some(m) = self.pacers.get(business as usize) else {
                return false;
            };
            let mut p = m.lock().unwrap_or_else(|p| p.into_inner());
            if !p.active {
                return false;
            }
            let now = Instant::now();
            let at = p.next_free.map_or(now, |t| t.max(now));
            p.next_free = Some(at + self.tier_interval);
            at
        };
        let waits = wait_until > Instant::now();
        tokio::time::sleep_until(wait_until.into()).await;
        waits
    }

    fn slow_down(&self, business: u32) {
        if let Some(m) = self.pacers.get(business as usize) {
            m.lock().unwrap_or_else(|p| p.into_inner()).active = true;
        }
    }

    /// One request to the business API: what came of it, and how long its answer waited on
    /// this machine before it was read (`None`: not known, or no answer).
    async fn post(
        &self,
        business: u32,
        body: &str,
        timeout: Duration,
    ) -> (Outcome, Option<Duration>) {
        let endpoint = self.pool.endpoint();
        let path = format!("{}/v1/{business}/messages", endpoint.base_path);
        let mut bytes = Vec::with_capacity(body.len() + 160);
        write_request(
            &mut bytes,
            "POST",
            &path,
            endpoint,
            "",
            Some(body.as_bytes()),
        );
        let (answer, arrived_ns) = self.pool.clone().request(bytes, timeout).await;
        let waited = crate::transport::waited_since(arrived_ns);
        let outcome = match answer {
            Ok(a) if (200..300).contains(&a.status) => Outcome::Accepted,
            Ok(a) => Outcome::Refused {
                http: a.status,
                code: serde_json::from_slice::<Value>(&a.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_u64())
                    .unwrap_or(0),
            },
            Err((ErrorKind::RequestTimeout, _)) => Outcome::TimedOut,
            Err((_, detail)) => Outcome::Failed(crate::secrets::redact(&detail)),
        };
        (outcome, waited)
    }

    fn body(order: &Order, sent_us: u64) -> String {
        let Recipient::User(to) = order.to else {
            return String::new();
        };
        let text = filler_body(order.size as usize);
        let cb = correlation(order.id, order.intended_us, sent_us);
        let (kind, content) = match order.action {
            Action::Template { marketing, otp } => {
                let category = match (otp, marketing) {
                    (true, _) => "authentication",
                    (false, true) => "marketing",
                    _ => "utility",
                };
                (
                    "template",
                    json!({"name": category, "category": category, "language": {"code": "en_US"},
                           "components": [{"type": "body", "parameters": [{"type": "text", "text": text}]}]}),
                )
            }
            Action::Reply { interactive: true } => (
                "interactive",
                json!({"type": "button", "body": {"text": text},
                       "action": {"buttons": [{"type": "reply", "reply": {"id": "b1", "title": "Yes"}},
                                              {"type": "reply", "reply": {"id": "b2", "title": "No"}}]}}),
            ),
            _ => ("text", json!({"body": text})),
        };
        let mut v = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.to_string(),
            "type": kind,
            "biz_opaque_callback_data": cb,
        });
        v[kind] = content;
        v.to_string()
    }

    async fn execute(&self, order: Order) {
        let ctx = &self.ctx;
        let p = order.pattern as usize;
        let business = order.sender;
        let Recipient::User(to) = order.to else {
            return;
        };
        if let Action::MarkRead { of } = order.action {
            let body = json!({"messaging_product": "whatsapp", "status": "read",
                              "message_id": inbound_wamid(to, of), "typing_indicator": {"type": "text"}})
            .to_string();
            let policy = self.policy(order.pattern);
            match self.post(business, &body, policy.timeout.as_std()).await.0 {
                Outcome::Accepted => ctx.recorders.local().counters[p].mark_reads += 1,
                _ => ctx
                    .recorders
                    .local()
                    .error(ErrorKind::Http, || "a mark-read request failed".into()),
            }
            return;
        }
        let policy = self.policy(order.pattern);
        let late = order.action == Action::LateReply;
        if ctx
            .ledger
            .open(
                order.id,
                order.pattern,
                BUSINESS_BASE + business,
                order.intended_us,
                Owed::One(to),
            )
            .is_none()
        {
            // Settled (a stop) before this order's turn: not sent, as `count_not_sent`.
            ctx.recorders.local().counters[p].not_sent_for(NotSentReason::Behind);
            return;
        }
        let first_us = ctx.now_us();
        let body = Self::body(&order, first_us);
        {
            let mut rec = ctx.recorders.local();
            let lag = first_us.saturating_sub(order.intended_us);
            rec.record(p, Metric::SendLag, lag);
            let c = &mut rec.counters[p];
            c.messages_sent += 1;
            c.api_requests += 1;
            c.deliveries_owed += 1;
            c.late_replies += late as u64;
            if lag > LATE_SEND_US {
                c.late_sends += 1;
            }
        }
        let mut maybe_accepted = false;
        let mut pair_refusals = 0i32;
        let mut attempt = 0u32;
        loop {
            if policy.slow_to_tier && self.pace(business).await {
                // Held back to the tier on purpose, as the business's own client would: the
                // target is owed the delivery from when it could have it, not before.
                ctx.ledger.defer(order.id, ctx.now_us());
            }
            let start = ctx.now_us();
            let (outcome, waited) = self.post(business, &body, policy.timeout.as_std()).await;
            let read_at = ctx.now_us();
            let wait = {
                let mut rec = ctx.recorders.local();
                // When the answer arrived: the time it waited for this client is not the
                // API's (`read_lag`, as for every other answer).
                let now = match waited {
                    Some(w) => {
                        let w = (w.as_micros() as u64).min(read_at.saturating_sub(start));
                        let slot = rec.no_pattern();
                        rec.record(slot, Metric::ReadLag, w);
                        read_at - w
                    }
                    None => read_at,
                };
                let c = &mut rec.counters[p];
                match outcome {
                    Outcome::Accepted => {
                        c.acked += 1;
                        c.api_accepted += 1;
                        c.window_violations += late as u64;
                        rec.record(p, Metric::Send, now.saturating_sub(order.intended_us));
                        rec.record(p, Metric::SendService, now.saturating_sub(start));
                        return;
                    }
                    Outcome::TimedOut => {
                        c.request_timeouts += 1;
                        maybe_accepted = true;
                        Some(self.backoff(&order, &policy, attempt))
                    }
                    Outcome::Refused { code: 130429, .. } => {
                        c.throttled_130429 += 1;
                        if policy.slow_to_tier {
                            self.slow_down(business);
                            Some(Duration::ZERO)
                        } else {
                            Some(self.backoff(&order, &policy, attempt))
                        }
                    }
                    Outcome::Refused { code: 131056, .. } => {
                        c.pair_limited_131056 += 1;
                        pair_refusals += 1;
                        // Meta: retry after 4^x seconds, x = 0, 1, 2, …
                        policy
                            .pair_backoff
                            .then(|| Duration::from_secs(4u64.pow((pair_refusals - 1) as u32)))
                    }
                    Outcome::Refused { code: 131047, .. } => {
                        c.outside_window_131047 += 1;
                        None
                    }
                    Outcome::Refused { code: 131048, .. } => {
                        c.spam_131048 += 1;
                        None
                    }
                    Outcome::Refused { http, .. } if http >= 500 => {
                        c.server_errors_5xx += 1;
                        Some(self.backoff(&order, &policy, attempt))
                    }
                    Outcome::Refused { http, code } => {
                        drop(rec);
                        ctx.recorders.local().error(ErrorKind::Http, || {
                            format!("the business API answered HTTP {http} with code {code}")
                        });
                        None
                    }
                    Outcome::Failed(detail) => {
                        drop(rec);
                        ctx.recorders.local().error(ErrorKind::Http, || {
                            format!("a business API request failed: {detail}")
                        });
                        maybe_accepted = true;
                        Some(self.backoff(&order, &policy, attempt))
                    }
                }
            };
            attempt += 1;
            let give_up =
                wait.is_none() || attempt > policy.max_retries || ctx.finished.load(Relaxed);
            if give_up {
                self.give_up(&order, maybe_accepted, late);
                return;
            }
            ctx.recorders.local().counters[p].api_retries += 1;
            if let Some(w) = wait.filter(|w| !w.is_zero()) {
                tokio::time::sleep(w).await;
            }
        }
    }

    /// Full-jitter exponential backoff, keyed so the same run waits the same.
    fn backoff(&self, order: &Order, policy: &ApiClientPolicy, attempt: u32) -> Duration {
        let cap = policy.retry_base.0 as f64 * 2f64.powi(attempt.min(20) as i32 + 1);
        let u = keyed::unit(
            self.ctx.scenario.seed,
            self.ctx.id_start.key_of(order.id),
            100 + attempt as u64,
        );
        Duration::from_micros((u * cap.min(30e6)) as u64)
    }

    /// No more attempts. A request that may have been accepted (it timed out) stays owed:
    /// whether it arrives is then for the ledger to say; a refused one is withdrawn.
    fn give_up(&self, order: &Order, maybe_accepted: bool, late: bool) {
        let ctx = &self.ctx;
        let mut rec = ctx.recorders.local();
        let c = &mut rec.counters[order.pattern as usize];
        if maybe_accepted {
            // Timed out or failed on every attempt: whether the API took it is unknown.
            c.unacknowledged += 1;
        } else {
            c.withdrawn += ctx.ledger.cancel(order.id) as u64;
            // A late reply must be refused: that is the API keeping its window, counted
            // under late_replies, not a refusal of the run's traffic.
            if !late {
                c.refused += 1;
            }
        }
    }
}

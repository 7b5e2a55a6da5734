//! Webhook delivery: statuses and inbound messages POSTed to each business's registered URL
//! in the Cloud API envelope (`object` / `entry` / `changes` / `value`), batched, optionally
//! shuffled within a reorder window (Meta does not guarantee order), retried with backoff.
//! Owns the emitter task; what to emit is decided in `business`.

use crate::hub::Hub;
use crate::protocol::keyed;
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl StatusKind {
    pub fn name(self) -> &'static str {
        match self {
            StatusKind::Sent => "sent",
            StatusKind::Delivered => "delivered",
            StatusKind::Read => "read",
            StatusKind::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub enum WebhookEvent {
    Status {
        business: u32,
        wamid: u64,
        user: u32,
        status: StatusKind,
        callback: Option<Box<str>>,
        error: Option<(u32, &'static str)>,
    },
    Inbound {
        business: u32,
        user: u32,
        id: u64,
        kind: Box<str>,
    },
}

impl WebhookEvent {
    fn business(&self) -> u32 {
        match self {
            WebhookEvent::Status { business, .. } | WebhookEvent::Inbound { business, .. } => {
                *business
            }
        }
    }

    fn user(&self) -> u32 {
        match self {
            WebhookEvent::Status { user, .. } | WebhookEvent::Inbound { user, .. } => *user,
        }
    }

    fn value(&self, ts: &str) -> (&'static str, Value) {
        match self {
            WebhookEvent::Status {
                wamid,
                user,
                status,
                callback,
                error,
                ..
            } => {
                let mut v = json!({
                    "id": format!("wamid.{wamid}"),
                    "status": status.name(),
                    "timestamp": ts,
                    "recipient_id": user.to_string(),
                });
                if let Some(cb) = callback {
                    v["biz_opaque_callback_data"] = json!(cb);
                }
                if let Some((code, title)) = error {
                    v["errors"] = json!([{ "code": code, "title": title, "message": title }]);
                }
                ("statuses", v)
            }
            WebhookEvent::Inbound { user, id, kind, .. } => {
                let mut v = json!({
                    "from": user.to_string(),
                    "id": super::inbound_wamid(*user, *id),
                    "timestamp": ts,
                    "type": kind.as_ref(),
                });
                match kind.as_ref() {
                    "interactive" => {
                        v["interactive"] = json!({"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes"}})
                    }
                    _ => v["text"] = json!({"body": "hello"}),
                }
                ("messages", v)
            }
        }
    }
}

/// How the emitter behaves.
#[derive(Debug, Clone, Copy)]
pub struct EmitterConfig {
    /// Each event waits a uniform random time up to this before it is sent.
    pub reorder: Duration,
    pub seed: u64,
}

#[derive(Debug, Default)]
pub struct WebhookStats {
    pub posts: AtomicU64,
    pub events: AtomicU64,
    pub retries: AtomicU64,
    pub failed: AtomicU64,
    pub unregistered: AtomicU64,
}

const BATCH: usize = 50;
const ATTEMPTS: u32 = 6;
const IN_FLIGHT: usize = 64;

/// Runs until the event channel closes.
pub async fn run_emitter(
    hub: Arc<Hub>,
    mut events: mpsc::UnboundedReceiver<WebhookEvent>,
    config: EmitterConfig,
    stats: Arc<WebhookStats>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
    {
        Ok(c) => c,
        Err(_) => return,
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: BinaryHeap<Reverse<(Instant, u64, usize)>> = BinaryHeap::new();
    let mut store: Vec<Option<WebhookEvent>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut n = 0u64;
    let mut open = true;
    while open || !held.is_empty() {
        let next_due = held.peek().map(|Reverse((d, _, _))| *d);
        tokio::select! {
            e = events.recv(), if open => match e {
                Some(e) => {
                    n += 1;
                    let wait = config.reorder.mul_f64(keyed::unit(config.seed, n, 11));
                    let slot = match free.pop() {
                        Some(i) => { store[i] = Some(e); i }
                        None => { store.push(Some(e)); store.len() - 1 }
                    };
                    held.push(Reverse((Instant::now() + wait, n, slot)));
                }
                None => open = false,
            },
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {}
        }
        let now = Instant::now();
        let mut due: Vec<WebhookEvent> = Vec::new();
        while held.peek().is_some_and(|Reverse((d, _, _))| *d <= now) {
            if let Some(Reverse((_, _, slot))) = held.pop()
                && let Some(e) = store[slot].take()
            {
                free.push(slot);
                due.push(e);
            }
        }
        // Take whatever else already waits, so a burst goes out in few POSTs.
        if config.reorder.is_zero() {
            while due.len() < BATCH * 8 {
                match events.try_recv() {
                    Ok(e) => due.push(e),
                    Err(_) => break,
                }
            }
        }
        // One number's events go to one receiver, or in a split run to each consumer's
        // segment's: sorting by (number, segment) keeps each POST to one receiver.
        let routes = RouteCache::for_events(&hub, &due);
        due.sort_by_key(|e| routes.key(e));
        for chunk in due.chunk_by(|a, b| routes.key(a) == routes.key(b)) {
            for batch in chunk.chunks(BATCH) {
                let business = batch[0].business();
                let Some(url) = routes.url(&batch[0]) else {
                    stats.unregistered.fetch_add(batch.len() as u64, Relaxed);
                    continue;
                };
                let body = envelope(business, batch);
                stats.events.fetch_add(batch.len() as u64, Relaxed);
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (client, stats) = (client.clone(), stats.clone());
                tokio::spawn(async move {
                    post_with_retries(&client, &url, body, &stats).await;
                    drop(permit);
                });
            }
        }
    }
}

/// The routes of the numbers in one batch of due events, looked up once per number.
struct RouteCache(Vec<(u32, Option<super::routes::Route>)>);

impl RouteCache {
    fn for_events(hub: &Hub, events: &[WebhookEvent]) -> RouteCache {
        let mut routes: Vec<(u32, Option<super::routes::Route>)> = Vec::new();
        for e in events {
            let business = e.business();
            if !routes.iter().any(|(b, _)| *b == business) {
                routes.push((business, hub.business.webhooks.route(business)));
            }
        }
        RouteCache(routes)
    }

    fn route(&self, business: u32) -> Option<&super::routes::Route> {
        self.0
            .iter()
            .find(|(b, _)| *b == business)
            .and_then(|(_, r)| r.as_ref())
    }

    /// The receiver an event goes to: its number and, in a split run, its consumer's
    /// segment (0 in a whole run). Events with one key go out in one POST.
    fn key(&self, e: &WebhookEvent) -> (u32, usize) {
        let business = e.business();
        let slot = self
            .route(business)
            .map_or(0, |r| super::routes::slot_index(r, e.user()));
        (business, slot)
    }

    fn url(&self, e: &WebhookEvent) -> Option<std::sync::Arc<str>> {
        super::routes::slot_url(self.route(e.business())?, e.user())
    }
}

fn envelope(business: u32, batch: &[WebhookEvent]) -> String {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let mut statuses = Vec::new();
    let mut messages = Vec::new();
    for e in batch {
        match e.value(&ts) {
            ("statuses", v) => statuses.push(v),
            (_, v) => messages.push(v),
        }
    }
    let mut value = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": business.to_string(), "phone_number_id": business.to_string()},
    });
    if !statuses.is_empty() {
        value["statuses"] = Value::Array(statuses);
    }
    if !messages.is_empty() {
        value["messages"] = Value::Array(messages);
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": business.to_string(), "changes": [{"field": "messages", "value": value}]}],
    })
    .to_string()
}

async fn post_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: String,
    stats: &WebhookStats,
) {
    let mut wait = Duration::from_millis(100);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            stats.retries.fetch_add(1, Relaxed);
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            stats.posts.fetch_add(1, Relaxed);
            return;
        }
    }
    stats.failed.fetch_add(1, Relaxed);
}

//! The reference server's business side, shaped like the WhatsApp Cloud API (docs/workloads.md §1,
//! §6.1): sends with limits and the real error codes, statuses and inbound messages emitted as
//! webhooks, and the bridge to consumers on the WebSocket side. Owns the API's decisions;
//! HTTP framing is in `http`, webhook delivery in `webhook`, limit arithmetic in `limits`.

pub mod http;
pub mod limits;
pub mod routes;
pub mod webhook;

use super::hub::Hub;
use crate::knobs::ApiFaults;
use crate::protocol::keyed;
use crate::protocol::{BUSINESS_BASE, Delivery};
use limits::{Account, Limits, Refusal};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;
use webhook::{StatusKind, WebhookEvent};

const SHARDS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Template category (what a business-initiated message is billed and capped as).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Marketing,
    Utility,
    Authentication,
    /// Free-form inside the customer-service window.
    Service,
}

impl Category {
    pub fn parse(s: &str) -> Category {
        match s {
            "marketing" => Category::Marketing,
            "authentication" => Category::Authentication,
            "service" => Category::Service,
            _ => Category::Utility,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Category::Marketing => "marketing",
            Category::Utility => "utility",
            Category::Authentication => "authentication",
            Category::Service => "service",
        }
    }
}

/// One send request, already parsed from its JSON.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub to: u32,
    /// "template", "text", "interactive", "image", …
    pub kind: String,
    pub category: Category,
    pub body: String,
    pub callback: Option<String>,
}

/// An error in the Graph API envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError {
    pub http: u16,
    pub code: u32,
    pub message: &'static str,
}

impl ApiError {
    pub const THROUGHPUT: ApiError = ApiError {
        http: 429,
        code: 130429,
        message: "(#130429) Rate limit hit",
    };
    pub const PAIR_RATE: ApiError = ApiError {
        http: 429,
        code: 131056,
        message: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    };
    pub const OUTSIDE_WINDOW: ApiError = ApiError {
        http: 400,
        code: 131047,
        message: "(#131047) Re-engagement message: more than 24 hours have passed since the recipient last replied",
    };
    pub const SPAM: ApiError = ApiError {
        http: 429,
        code: 131048,
        message: "(#131048) Spam rate limit hit",
    };
    pub const INTERNAL: ApiError = ApiError {
        http: 500,
        code: 131000,
        message: "(#131000) Something went wrong",
    };
    pub const BAD_REQUEST: ApiError = ApiError {
        http: 400,
        code: 100,
        message: "(#100) Invalid parameter",
    };
}

/// What happened to an accepted send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub wamid: u64,
    /// The response is withheld (the timeout-after-accept fault).
    pub withhold: bool,
}

struct SentMessage {
    business: u32,
    user: u32,
    callback: Option<Box<str>>,
    delivered: bool,
}

#[derive(Debug, Default)]
pub struct BusinessStats {
    pub accepted: AtomicU64,
    pub refused: [AtomicU64; 6],
    pub failed_async: AtomicU64,
    pub inbound: AtomicU64,
    pub statuses: AtomicU64,
    pub withheld: AtomicU64,
}

/// Counts by code: 130429, 131056, 131047, 131048, 131000 (5xx), 100.
const REFUSAL_CODES: [u32; 6] = [130429, 131056, 131047, 131048, 131000, 100];

pub struct BusinessHub {
    accounts: Box<[Mutex<FxHashMap<u32, Account>>]>,
    limits: Mutex<Limits>,
    pub webhooks: routes::WebhookRoutes,
    messages: Box<[Mutex<FxHashMap<u64, SentMessage>>]>,
    next_wamid: AtomicU64,
    requests: AtomicU64,
    faults: ApiFaults,
    events: UnboundedSender<WebhookEvent>,
    pub stats: BusinessStats,
}

impl BusinessHub {
    pub fn new(faults: ApiFaults, events: UnboundedSender<WebhookEvent>) -> Self {
        BusinessHub {
            accounts: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            limits: Mutex::new(Limits::default()),
            webhooks: routes::WebhookRoutes::default(),
            messages: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            next_wamid: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            faults,
            events,
            stats: BusinessStats::default(),
        }
    }

    /// New limits for every number; existing limit state starts over.
    pub fn configure(&self, limits: Limits) {
        *lock(&self.limits) = limits;
        for shard in self.accounts.iter() {
            lock(shard).clear();
        }
    }

    pub fn limits(&self) -> Limits {
        *lock(&self.limits)
    }

    fn with_account<T>(&self, business: u32, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut shard = lock(&self.accounts[business as usize % SHARDS]);
        let limits = self.limits();
        let account = shard
            .entry(business)
            .or_insert_with(|| Account::new(limits, Instant::now()));
        f(account)
    }

    /// `(throughput_mps, messaging_limit, unique_recipients_used)` for `GET …/limits`.
    pub fn usage(&self, business: u32) -> (Limits, usize) {
        self.with_account(business, |a| (a.limits(), a.unique_recipients()))
    }

    fn count_refusal(&self, e: ApiError) -> ApiError {
        if let Some(i) = REFUSAL_CODES.iter().position(|c| *c == e.code) {
            self.stats.refused[i].fetch_add(1, Relaxed);
        }
        e
    }

    pub fn refusals(&self) -> Vec<(u32, u64)> {
        REFUSAL_CODES
            .iter()
            .zip(&self.stats.refused)
            .map(|(c, n)| (*c, n.load(Relaxed)))
            .collect()
    }

    /// A business send: injected faults, then the limits, then delivery to the consumer.
    pub fn send(
        &self,
        hub: &Hub,
        business: u32,
        req: &SendRequest,
        correlation: (u64, u64, u64),
    ) -> Result<Accepted, ApiError> {
        let now = Instant::now();
        let n = self.requests.fetch_add(1, Relaxed);
        let f = &self.faults;
        let u = keyed::unit(f.seed, n, 1);
        let mut edge = 0.0;
        for (p, e) in [
            (f.throttle, ApiError::THROUGHPUT),
            (f.pair_rate, ApiError::PAIR_RATE),
            (f.spam, ApiError::SPAM),
            (f.server_error, ApiError::INTERNAL),
        ] {
            edge += p;
            if u < edge {
                return Err(self.count_refusal(e));
            }
        }
        let free_form = req.kind != "template";
        let (checked, reached) = self.with_account(business, |a| {
            let checked = a.outbound(req.to, free_form, now);
            let reached = checked.is_ok() && (free_form || a.reach(req.to, now));
            (checked, reached)
        });
        checked.map_err(|r| {
            self.count_refusal(match r {
                Refusal::Throughput => ApiError::THROUGHPUT,
                Refusal::PairRate => ApiError::PAIR_RATE,
                Refusal::OutsideWindow => ApiError::OUTSIDE_WINDOW,
            })
        })?;
        let wamid = self.next_wamid.fetch_add(1, Relaxed);
        self.stats.accepted.fetch_add(1, Relaxed);
        let withhold = keyed::unit(f.seed, n, 2) < f.timeout;
        if withhold {
            self.stats.withheld.fetch_add(1, Relaxed);
        }
        let v = keyed::unit(f.seed, n, 3);
        let async_failure = if !reached {
            Some((
                131000u32,
                "Message failed to send: the messaging limit was reached",
            ))
        } else if v < f.undeliverable {
            Some((131026, "Message undeliverable"))
        } else if req.category == Category::Marketing && v < f.undeliverable + f.marketing_cap {
            Some((
                131049,
                "This message was not delivered to maintain healthy ecosystem engagement",
            ))
        } else {
            None
        };
        let callback = req.callback.as_deref().map(Box::from);
        if let Some(error) = async_failure {
            self.stats.failed_async.fetch_add(1, Relaxed);
            self.emit_status(
                business,
                wamid,
                req.to,
                StatusKind::Failed,
                callback,
                Some(error),
            );
            return Ok(Accepted { wamid, withhold });
        }
        let (id, intended_us, sent_us) = correlation;
        lock(&self.messages[wamid as usize % SHARDS]).insert(
            wamid,
            SentMessage {
                business,
                user: req.to,
                callback: callback.clone(),
                delivered: false,
            },
        );
        self.emit_status(business, wamid, req.to, StatusKind::Sent, callback, None);
        hub.deliver(
            Delivery {
                seq: 0,
                id,
                from: BUSINESS_BASE + business,
                to: req.to,
                group: None,
                intended_us,
                sent_us,
                body: &req.body,
                wamid,
                kind: Some(&req.kind),
                media_bytes: 0,
            },
            now,
            0,
        );
        Ok(Accepted { wamid, withhold })
    }

    fn emit_status(
        &self,
        business: u32,
        wamid: u64,
        user: u32,
        status: StatusKind,
        callback: Option<Box<str>>,
        error: Option<(u32, &'static str)>,
    ) {
        self.stats.statuses.fetch_add(1, Relaxed);
        let _ = self.events.send(WebhookEvent::Status {
            business,
            wamid,
            user,
            status,
            callback,
            error,
        });
    }

    /// The consumer's device acknowledged business message `wamid`.
    pub fn delivered(&self, wamid: u64) {
        let found = {
            let mut shard = lock(&self.messages[wamid as usize % SHARDS]);
            shard.get_mut(&wamid).and_then(|m| {
                (!m.delivered).then(|| {
                    m.delivered = true;
                    (m.business, m.user, m.callback.clone())
                })
            })
        };
        if let Some((b, u, cb)) = found {
            self.emit_status(b, wamid, u, StatusKind::Delivered, cb, None);
        }
    }

    /// The consumer read business message `wamid` ("read" implies delivered).
    pub fn read(&self, wamid: u64) {
        let found = lock(&self.messages[wamid as usize % SHARDS]).remove(&wamid);
        if let Some(m) = found {
            if !m.delivered {
                self.emit_status(
                    m.business,
                    wamid,
                    m.user,
                    StatusKind::Delivered,
                    m.callback.clone(),
                    None,
                );
            }
            self.emit_status(
                m.business,
                wamid,
                m.user,
                StatusKind::Read,
                m.callback,
                None,
            );
        }
    }

    /// A consumer wrote to a business: opens the window and becomes an inbound webhook.
    pub fn inbound(&self, business: u32, user: u32, id: u64, kind: Option<&str>) {
        self.with_account(business, |a| a.inbound(user, Instant::now()));
        self.stats.inbound.fetch_add(1, Relaxed);
        let _ = self.events.send(WebhookEvent::Inbound {
            business,
            user,
            id,
            kind: kind.unwrap_or("text").into(),
        });
    }
}

/// The id an inbound message has on the business side: `wamid.c<user>.<id>`.
pub fn inbound_wamid(user: u32, id: u64) -> String {
    format!("wamid.c{user}.{id}")
}

pub fn parse_inbound_wamid(s: &str) -> Option<(u32, u64)> {
    let rest = s.strip_prefix("wamid.c")?;
    let (u, id) = rest.split_once('.')?;
    Some((u.parse().ok()?, id.parse().ok()?))
}

/// chatload's correlation in `biz_opaque_callback_data`: `cl:<id>:<intended µs>:<sent µs>`.
pub fn parse_correlation(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.strip_prefix("cl:")?.split(':');
    let id = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    let sent = it.next()?.parse().ok()?;
    Some((id, t, sent))
}

pub fn correlation(id: u64, intended_us: u64, sent_us: u64) -> String {
    format!("cl:{id}:{intended_us}:{sent_us}")
}

pub type SharedBusinessHub = Arc<BusinessHub>;

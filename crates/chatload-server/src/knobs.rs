//! The reference server's own knobs: the faults it injects and the rate it can carry. The
//! server's type, so that it depends on nothing of the client side; a scenario's
//! `[target.server]` table and `chatload serve`'s flags are turned into it by the engine and
//! the command (`engine::embedded`).

use rand_pcg::Pcg64Mcg;
use std::sync::Arc;
use std::time::Duration;

/// What the server does to the traffic it carries. The default injects nothing.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    /// Added to every delivery.
    pub delay: Duration,
    /// Added to every delivery on top of `delay`, drawn per delivery.
    pub latency: Option<Latency>,
    pub drop_every: u64,
    pub duplicate_every: u64,
    pub reorder_every: u64,
    /// Every n-th send is taken and delivered, but its confirmation (`sent`) is never written:
    /// a server whose acknowledgements go missing.
    pub drop_ack_every: u64,
    /// Every confirmation (`sent`) is written this long after its send was taken, on the
    /// connection the send came on (none if it has closed by then, as when a real server's
    /// connection drops: the client sends it again): a slow acknowledgement path.
    pub ack_delay: Duration,
    /// Every n-th delivery freezes its recipient's connection for `stall`.
    pub stall_every: u64,
    pub stall: Duration,
    /// Every n-th delivery cuts its recipient's connection instead (it is resent on resume).
    pub reset_every: u64,
    /// Every n-th delivery is held back `hold` before it goes out.
    pub hold_every: u64,
    pub hold: Duration,
    /// Deliveries for users who are not connected are discarded rather than kept for their
    /// next connection (a server that loses offline queues).
    pub discard_offline: bool,
    /// Messages per second the server can take and deliver (0: no limit); past it, messages
    /// queue and wait their turn, as on a saturated server: a known knee for capacity tests.
    pub max_rate: f64,
    pub api: ApiFaults,
}

/// Extra latency per delivery, in microseconds, drawn from a generator the server keys by
/// the delivery (so the same seed gives the same delays).
#[derive(Clone)]
pub struct Latency(Arc<dyn Fn(&mut Pcg64Mcg) -> f64 + Send + Sync>);

impl Latency {
    pub fn new(draw: impl Fn(&mut Pcg64Mcg) -> f64 + Send + Sync + 'static) -> Self {
        Latency(Arc::new(draw))
    }

    pub fn draw(&self, rng: &mut Pcg64Mcg) -> f64 {
        (self.0)(rng)
    }
}

impl std::fmt::Debug for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Latency(..)")
    }
}

/// Faults of the business HTTP API, as probabilities per send request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApiFaults {
    pub seed: u64,
    /// 130429 throughput refusals beyond the real limit.
    pub throttle: f64,
    /// 131056 pair-rate refusals beyond the real limit.
    pub pair_rate: f64,
    /// 131048 spam refusals.
    pub spam: f64,
    /// HTTP 500 (131000).
    pub server_error: f64,
    /// Accepted and delivered, but the response is withheld (the client times out).
    pub timeout: f64,
    /// Accepted, then a `failed` status with 131026.
    pub undeliverable: f64,
    /// Marketing templates accepted, then `failed` with 131049.
    pub marketing_cap: f64,
    /// Webhooks wait a random time up to this before they are sent (out of order).
    pub webhook_reorder: Duration,
}

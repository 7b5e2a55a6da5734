//! What the reference server reports about itself when asked: the counters of one moment
//! (`chatload serve`'s exit lines and `/metrics`, and the `server` section of a run's
//! summary.json). Here, not in the server, because the client side's summary carries it and
//! the client side may depend on the protocol crate only. Owns the shape, not the counting.

/// The reference server's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerCounters {
    pub connections: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub dropped: u64,
    /// Confirmations of sends withheld by the missing-acknowledgement fault.
    #[serde(default)]
    pub acks_dropped: u64,
    #[serde(default)]
    pub discarded: u64,
    #[serde(default)]
    pub held: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub overflowed: u64,
    pub malformed: u64,
    #[serde(default)]
    pub retransmitted: u64,
    #[serde(default)]
    pub stalled: u64,
    #[serde(default)]
    pub resets: u64,
    /// Typing, presence and read signals forwarded.
    #[serde(default)]
    pub signals: u64,
    /// Connections asked to leave by a graceful reconnect storm.
    #[serde(default)]
    pub goaways: u64,
    /// Bounds (`serve` flags) that refused something: connections closed on arrival, group
    /// definitions too large, deliveries not kept because all queues were full.
    #[serde(default)]
    pub connections_refused: u64,
    /// Connections replaced by a later log-in as the same user.
    #[serde(default)]
    pub replaced: u64,
    #[serde(default)]
    pub headers_timed_out: u64,
    #[serde(default)]
    pub groups_refused: u64,
    #[serde(default)]
    pub queue_full: u64,
    /// Connections cut for not reading what was written to them (`--max-write-queue`).
    #[serde(default)]
    pub slow_readers: u64,
    /// Business API: sends accepted, inbound messages, statuses emitted, webhook POSTs.
    #[serde(default)]
    pub business_accepted: u64,
    #[serde(default)]
    pub business_inbound: u64,
    #[serde(default)]
    pub business_statuses: u64,
    /// Business sends refused, by error code.
    #[serde(default)]
    pub business_refused: Vec<(u32, u64)>,
}

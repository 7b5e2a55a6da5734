//! What the reference server did, counted as it goes (`HubStats`, atomics the hub and the
//! connections bump) and read at once (`chatload_protocol::ServerCounters`, for `serve`'s
//! exit lines, `/metrics` and the `server` section of a run's summary). Owns the counters,
//! not when they are counted.

use chatload_protocol::ServerCounters;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the server did, for `serve`'s report and for tests that check the client's counts.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    /// Deliveries routed to a recipient (counted when routed, before any delay or queue).
    pub delivered: AtomicU64,
    /// Deliveries written to a recipient's live connection when due (after delays, the
    /// `max_rate` queue and holds): the server's throughput as a client sees it.
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    /// Confirmations of sends withheld by the missing-acknowledgement fault.
    pub acks_dropped: AtomicU64,
    /// Deliveries for users who were not connected, discarded (`offline_queue = false`).
    pub discarded: AtomicU64,
    /// Deliveries held back by the hold fault.
    pub held: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub overflowed: AtomicU64,
    /// Frames that could not be understood, frames longer than the server reads (the
    /// connection is closed with code 1009 and the reason), and WebSocket upgrade requests
    /// refused (answered with a 4xx status and the reason).
    pub malformed: AtomicU64,
    pub retransmitted: AtomicU64,
    pub stalled: AtomicU64,
    /// Connections cut by the reset fault (counted when cut).
    pub resets: AtomicU64,
    pub signals: AtomicU64,
    pub goaways: AtomicU64,
    /// Connections closed on arrival because `max_connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because another logged in as the same user.
    pub replaced: AtomicU64,
    /// Connections closed because their request header or upgrade did not arrive within
    /// `header_timeout`.
    pub headers_timed_out: AtomicU64,
    /// Group definitions refused for more than `max_group_size` members.
    pub groups_refused: AtomicU64,
    /// Deliveries not kept because all queues together held `queue_bytes` (a recipient
    /// offline at the time never gets them).
    pub queue_full: AtomicU64,
    /// Connections cut because more than `max_write_queue` bytes waited to be written to
    /// them: clients that stopped reading.
    pub slow_readers: AtomicU64,
}

impl HubStats {
    /// The counters at this moment, with the business API's (accepted, inbound, statuses,
    /// refused), which its own stats keep.
    pub fn counters(&self, business: (u64, u64, u64, Vec<(u32, u64)>)) -> ServerCounters {
        let (business_accepted, business_inbound, business_statuses, business_refused) = business;
        ServerCounters {
            connections: self.connections.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            acks_dropped: self.acks_dropped.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            held: self.held.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            overflowed: self.overflowed.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            retransmitted: self.retransmitted.load(Relaxed),
            stalled: self.stalled.load(Relaxed),
            resets: self.resets.load(Relaxed),
            signals: self.signals.load(Relaxed),
            goaways: self.goaways.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            headers_timed_out: self.headers_timed_out.load(Relaxed),
            groups_refused: self.groups_refused.load(Relaxed),
            queue_full: self.queue_full.load(Relaxed),
            slow_readers: self.slow_readers.load(Relaxed),
            business_accepted,
            business_inbound,
            business_statuses,
            business_refused,
        }
    }
}

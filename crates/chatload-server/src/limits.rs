//! The reference server's bounds on what its clients may make it hold: connections, the time
//! to send a request's header, a group's size, each user's queue of unacknowledged
//! deliveries and the bytes of all those queues together, and the frames waiting for a
//! connection that does not read. Each is a `chatload serve` flag
//! with a default that a hostile or runaway client cannot turn into unbounded memory or
//! pinned file descriptors; each overflow is counted in the server's stats. Owns the numbers,
//! not their enforcement (the hub and the accept loop enforce them).

use crate::protocol;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// How long a client may take to send a whole request header (HTTP) or WebSocket upgrade.
    pub header_timeout: Duration,
    /// Members of one group.
    pub max_group_size: usize,
    /// Deliveries kept for one user until acknowledged (its offline queue included).
    pub queue_per_user: usize,
    /// Bytes of all users' kept deliveries together.
    pub queue_bytes: usize,
    /// Bytes of frames one connection may have waiting to be written beyond what its socket
    /// took; a client that stops reading is cut past it (its deliveries stay kept for its
    /// next connection).
    pub max_write_queue: usize,
}

impl Limits {
    /// The longest frame a client may send: chatload's largest body, or a group definition
    /// of `max_group_size` members (at most 11 bytes each, as `4294967295,`), so that a group
    /// too large is refused with its reason rather than cut as a frame too long.
    pub fn max_frame(&self) -> usize {
        protocol::MAX_FRAME.max(self.max_group_size.saturating_mul(11).saturating_add(4096))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            max_group_size: 10_000,
            queue_per_user: 10_000,
            queue_bytes: 256 << 20,
            max_write_queue: 256 << 10,
        }
    }
}

/// Nine tenths of the process's file limit, so that the server keeps descriptors for its
/// own files, its listener and a health check when clients take all they may.
fn default_max_connections() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok && lim.rlim_cur != libc::RLIM_INFINITY {
        ((lim.rlim_cur as usize) / 10 * 9).max(64)
    } else {
        10_000
    }
}

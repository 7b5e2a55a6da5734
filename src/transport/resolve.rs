//! Names to addresses for the run's own connections. A target's host name is looked up once
//! and kept for [`TTL`] (k6's default), not once per connection: 19,000 users starting, or a
//! reconnect storm, would otherwise be 19,000 lookups, each on one of the runtime's blocking
//! threads and each a query to a DNS server that is not what is under test. Connections take
//! a name's addresses in turn, so a name with several (round-robin DNS, a headless service)
//! spreads the users over them as the DNS server's own rotation did when every connection
//! asked it. Owns that cache; not the connecting (`source`), nor the names reqwest resolves
//! for requests to other hosts.

use rustc_hash::FxHashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a name's addresses are used before it is looked up again.
pub const TTL: Duration = Duration::from_secs(300);

/// Names kept at most: a run connects to a handful; past this the cache starts afresh.
const MAX_NAMES: usize = 64;

/// The addresses one name had when it was looked up, and whose turn is next.
struct Resolved {
    at: Instant,
    addrs: Box<[SocketAddr]>,
    next: AtomicUsize,
}

impl Resolved {
    /// Every address, starting with the one whose turn it is.
    fn in_turn(&self) -> Vec<SocketAddr> {
        let start = self.next.fetch_add(1, Relaxed) % self.addrs.len();
        let mut out = Vec::with_capacity(self.addrs.len());
        out.extend_from_slice(&self.addrs[start..]);
        out.extend_from_slice(&self.addrs[..start]);
        out
    }
}

/// Host names looked up, by `host:port`.
#[derive(Default)]
pub struct Resolver {
    names: Mutex<FxHashMap<String, Arc<Resolved>>>,
}

static RESOLVER: LazyLock<Resolver> = LazyLock::new(Resolver::default);

/// The addresses of `addr` (`host:port`, an IPv6 host in brackets) to try in order: an IP
/// address as it is, a name from the process's cache or else looked up and kept.
pub async fn in_turn(addr: &str) -> io::Result<Vec<SocketAddr>> {
    RESOLVER.in_turn(addr, Instant::now()).await
}

impl Resolver {
    async fn in_turn(&self, addr: &str, now: Instant) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = addr.parse::<SocketAddr>() {
            return Ok(vec![ip]);
        }
        if let Some(kept) = self.kept(addr, now) {
            return Ok(kept.in_turn());
        }
        // Users that start together may each look the name up once before the first
        // answer is kept; a failed lookup is not kept, so the next connection asks again.
        let addrs: Box<[SocketAddr]> = tokio::net::lookup_host(addr).await?.collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{addr} has no address"),
            ));
        }
        let resolved = Arc::new(Resolved {
            at: now,
            addrs,
            next: AtomicUsize::new(0),
        });
        let out = resolved.in_turn();
        if let Ok(mut names) = self.names.lock() {
            if names.len() >= MAX_NAMES {
                names.clear();
            }
            names.insert(addr.to_string(), resolved);
        }
        Ok(out)
    }

    fn kept(&self, addr: &str, now: Instant) -> Option<Arc<Resolved>> {
        let names = self.names.lock().ok()?;
        names
            .get(addr)
            .filter(|r| now.saturating_duration_since(r.at) < TTL)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_looked_up_once_and_its_addresses_taken_in_turn() {
        let resolver = Resolver::default();
        let t0 = Instant::now();
        let first = resolver
            .in_turn("localhost:7", t0)
            .await
            .expect("localhost");
        assert!(!first.is_empty() && first.iter().all(|a| a.port() == 7));
        assert!(first.iter().all(|a| a.ip().is_loopback()), "{first:?}");
        // Kept: a second ask is served from the cache, starting one address further.
        let kept = resolver.kept("localhost:7", t0).expect("kept");
        let n = kept.addrs.len();
        let turns: Vec<SocketAddr> = (0..n)
            .map(|_| kept.in_turn()[0])
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(turns.len(), n, "each address leads in turn: {turns:?}");
        // Expired after the TTL.
        assert!(resolver.kept("localhost:7", t0 + TTL).is_none());
    }

    #[test]
    fn several_addresses_rotate_and_every_one_stays_a_fallback() {
        let addrs: Box<[SocketAddr]> = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
            .iter()
            .map(|a| a.parse().expect("an address"))
            .collect();
        let r = Resolved {
            at: Instant::now(),
            addrs,
            next: AtomicUsize::new(0),
        };
        let leads: Vec<String> = (0..4).map(|_| r.in_turn()[0].to_string()).collect();
        assert_eq!(
            leads,
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.1:80"]
        );
        let second = r.in_turn();
        assert_eq!(second.len(), 3);
        assert_eq!(second[0].to_string(), "10.0.0.2:80");
        assert_eq!(second[2].to_string(), "10.0.0.1:80");
    }

    #[tokio::test]
    async fn an_ip_address_is_not_looked_up_nor_kept() {
        let resolver = Resolver::default();
        let got = resolver
            .in_turn("[::1]:9", Instant::now())
            .await
            .expect("an address");
        assert_eq!(
            got,
            vec!["[::1]:9".parse::<SocketAddr>().expect("an address")]
        );
        assert!(resolver.names.lock().expect("not poisoned").is_empty());
    }
}

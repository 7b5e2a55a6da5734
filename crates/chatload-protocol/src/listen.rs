//! Listening sockets for what either side serves (the reference server, chatload's webhook
//! receivers): bound with an accept queue a server under load needs. Owns the backlog; not
//! what is served on the socket.
//!
//! tokio's `TcpListener::bind` queues 128 connections (the standard library's figure). When
//! more arrive in one instant than the accept loop takes — a reconnect storm's herd, a
//! webhook sender opening connections in a burst — Linux drops the excess and each such
//! client waits a second (then three) for its retransmission: 4,000 users reconnecting with
//! a fixed 100 ms backoff against the reference server were back in a median of 1.12 s, a
//! latency of the tool's own socket reported as the target's.

use std::io;
use std::net::SocketAddr;
use tokio::net::{TcpListener, TcpSocket, ToSocketAddrs, lookup_host};

/// The accept queue asked for: Linux's default `net.core.somaxconn` since 5.4, which caps it
/// anyway (as nginx and most servers ask for more than 128).
pub const BACKLOG: u32 = 4096;

/// Binds the first of `addr`'s addresses that binds, listening with [`BACKLOG`].
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = None;
    for one in lookup_host(addr).await? {
        match bind_one(one) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to no address",
        )
    }))
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio's own bind: a restarted server takes its port back while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 300 connections arrive and none is accepted yet: all complete at once (with tokio's
    /// own bind the 130th waits a second for its SYN's retransmission).
    #[tokio::test]
    async fn queues_a_burst_past_128_connections() {
        let listener = bind("localhost:0").await.expect("binds on loopback");
        let addr = listener.local_addr().expect("has an address");
        assert!(addr.ip().is_loopback());
        let mut clients = Vec::new();
        for n in 0..300 {
            let connect = tokio::net::TcpStream::connect(addr);
            match tokio::time::timeout(std::time::Duration::from_millis(500), connect).await {
                Ok(Ok(client)) => clients.push(client),
                other => panic!("connection {n} was not queued: {other:?}"),
            }
        }
        let (_server, _) = listener.accept().await.expect("accepts");
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error() {
        let first = bind("127.0.0.1:0").await.expect("binds");
        let taken = first.local_addr().expect("has an address");
        assert!(bind(taken).await.is_err());
    }
}

//! Where connections come from: a pool of local addresses, one per user in turn, so that a
//! run can hold more connections to one target than one address has ephemeral ports
//! (about 28,000 on Linux by default). Owns picking the address and opening a TCP
//! connection bound to it; not the protocol on top.

use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// Connections one local address may hold to one target before its ports run short.
pub const PER_ADDRESS: u64 = 25_000;

#[derive(Debug, Clone, Default)]
pub struct SourcePool {
    addrs: Vec<IpAddr>,
}

impl SourcePool {
    pub fn new(addrs: Vec<IpAddr>) -> Self {
        SourcePool { addrs }
    }

    /// The addresses the scenario names, or else [`SourcePool::automatic`] for `url`.
    pub fn for_target(configured: &[IpAddr], url: &str, users: u64) -> Self {
        if !configured.is_empty() {
            return SourcePool::new(configured.to_vec());
        }
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        SourcePool::automatic(&host, users)
    }

    /// For a loopback target and more users than one address holds, 127.0.0.1, .2, … (all
    /// of 127.0.0.0/8 is local on Linux); otherwise the system's choice.
    pub fn automatic(target_host: &str, users: u64) -> Self {
        let loopback = target_host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() && ip.is_ipv4())
            || target_host == "localhost";
        if !loopback || users <= PER_ADDRESS {
            return SourcePool::default();
        }
        let n = users.div_ceil(PER_ADDRESS).min(250) as u8;
        SourcePool {
            addrs: (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// The address `user` connects from, if the pool has any.
    pub fn for_user(&self, user: u32) -> Option<IpAddr> {
        (!self.addrs.is_empty()).then(|| self.addrs[user as usize % self.addrs.len()])
    }
}

/// A TCP connection to `host:port`, from `source` when given, with Nagle off (small frames
/// must not wait for each other).
pub async fn connect(addr: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(local) => {
            let mut last =
                io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"));
            let mut found = None;
            for remote in tokio::net::lookup_host(addr).await? {
                if remote.is_ipv4() != local.is_ipv4() {
                    continue;
                }
                let socket = if local.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(local, 0))?;
                match socket.connect(remote).await {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            found.ok_or(last)?
        }
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_runs_past_one_address_get_a_pool() {
        assert!(SourcePool::automatic("127.0.0.1", 10_000).is_empty());
        let p = SourcePool::automatic("127.0.0.1", 100_000);
        assert_eq!(p.len(), 4);
        assert_eq!(p.for_user(5), Some(IpAddr::from([127, 0, 0, 2])));
        assert!(SourcePool::automatic("10.1.2.3", 100_000).is_empty());
    }

    #[tokio::test]
    async fn connections_come_from_the_chosen_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(_, peer)| peer) });
        let _s = connect(&addr, Some(IpAddr::from([127, 0, 0, 7])))
            .await
            .unwrap();
        let peer = accept.await.unwrap().unwrap();
        assert_eq!(peer.ip(), IpAddr::from([127, 0, 0, 7]));
    }
}

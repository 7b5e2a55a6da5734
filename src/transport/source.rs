//! Where connections come from: a pool of local addresses, one per user in turn, so that a
//! run can hold more connections to one target than one address has ephemeral ports
//! (about 28,000 on Linux by default). Owns picking the address, opening a TCP connection
//! bound to it, and telling this machine's limits (ports, descriptors, socket memory) from
//! the target's answers; not the protocol on top.

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

/// This machine had no more of what a connection takes: said as chatload's own limit, with
/// what to change, since the error's own text ("Cannot assign requested address") reads
/// like the target's doing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LocalLimit(String);

/// Whether `e` is this machine's limit rather than the target's answer: said by
/// [`connect`], or the raw error of a socket another library opened (MQTT's).
pub fn is_local_limit(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<LocalLimit>())
        || e.raw_os_error().is_some_and(is_limit_code)
}

/// The OS errors that mean this machine's limit, not the target's answer.
fn is_limit_code(code: i32) -> bool {
    matches!(
        code,
        libc::EADDRNOTAVAIL | libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

/// What ran out, and what to change, for a code [`is_limit_code`] takes.
fn what_ran_out(code: i32) -> String {
    match code {
        libc::EADDRNOTAVAIL => {
            let ports = match local_port_range() {
                Some((low, high)) => format!(
                    "{} here (net.ipv4.ip_local_port_range {low}-{high})",
                    high - low + 1
                ),
                None => "net.ipv4.ip_local_port_range".to_string(),
            };
            format!(
                "no local port was left: one local address holds as many connections to one target as it has ports, {ports}; name more local addresses in [target] sources or widen the range"
            )
        }
        libc::EMFILE => "chatload reached its open-file limit (ulimit -n); raise it or run fewer users per process (--segment)".to_string(),
        libc::ENFILE => "the system's open-file table is full (fs.file-max)".to_string(),
        _ => "the kernel had no memory for another socket".to_string(),
    }
}

/// The ephemeral ports one local address has to reach one target
/// (`net.ipv4.ip_local_port_range`), when this system says.
fn local_port_range() -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut ends = text.split_whitespace().map(str::parse::<u32>);
    match (ends.next(), ends.next()) {
        (Some(Ok(low)), Some(Ok(high))) if high >= low => Some((low, high)),
        _ => None,
    }
}

/// Said before a run whose `connections` to `target` need more local ports than the pool's
/// addresses have (one address when it names none): the ones past it will fail as
/// `local_limit`.
pub fn shortfall(pool: &SourcePool, connections: u64, target: &str) -> Option<String> {
    let (low, high) = local_port_range()?;
    let per_address = u64::from(high - low + 1);
    let addresses = pool.len().max(1) as u64;
    (connections > per_address * addresses).then(|| {
        format!(
            "{connections} users each hold a connection to {target}, but {} has {per_address} local ports to reach it (net.ipv4.ip_local_port_range {low}-{high}): past that, connections fail as local_limit; name more local addresses in [target] sources or widen the range",
            if addresses == 1 {
                "one local address".to_string()
            } else {
                format!("each of {addresses} local addresses")
            }
        )
    })
}

/// `e` from connecting to `addr`, said as this machine's limit when it is one.
fn said(e: io::Error, addr: &str, source: Option<IpAddr>) -> io::Error {
    let Some(code) = e.raw_os_error().filter(|c| is_limit_code(*c)) else {
        return e;
    };
    let from = source.map(|s| format!(" from {s}")).unwrap_or_default();
    io::Error::other(LocalLimit(format!(
        "chatload could not open a connection to {addr}{from}, a limit of the machine it runs on and not the target's: {}",
        what_ran_out(code)
    )))
}

/// A TCP connection to `host:port`, from `source` when given, with Nagle off (small frames
/// must not wait for each other).
pub async fn connect(addr: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = open(addr, source)
        .await
        .map_err(|e| said(e, addr, source))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn open(addr: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr} has no address"));
    for remote in super::resolve::in_turn(addr).await? {
        let attempt = match source {
            None => TcpStream::connect(remote).await,
            Some(local) if remote.is_ipv4() != local.is_ipv4() => continue,
            Some(local) => {
                let socket = if local.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                // Binding to an address this machine does not have is the scenario's
                // mistake (EADDRNOTAVAIL, as a shortage of ports is at connect); bound, a
                // shortage of ports shows here as EADDRINUSE.
                socket
                    .bind(SocketAddr::new(local, 0))
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::EADDRNOTAVAIL) => io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("cannot connect from {local} ([target] sources): {e}"),
                        ),
                        Some(libc::EADDRINUSE) => io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
                        _ => e,
                    })?;
                socket.connect(remote).await
            }
        };
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
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

    #[test]
    fn a_shortage_on_this_machine_is_said_as_its_own() {
        use crate::metrics::ErrorKind;
        use crate::transport::connector::classify_io;
        let ports = said(
            io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
            "10.1.2.3:443",
            None,
        );
        assert_eq!(classify_io(&ports), ErrorKind::LocalLimit);
        let text = ports.to_string();
        assert!(
            text.starts_with("chatload could not open a connection to 10.1.2.3:443, a limit of the machine it runs on and not the target's: no local port was left")
                && text.contains("[target] sources"),
            "{text}"
        );
        let files = said(io::Error::from_raw_os_error(libc::EMFILE), "h:1", None);
        assert!(files.to_string().contains("ulimit -n"), "{files}");
        // A socket opened elsewhere (MQTT's) is judged by its raw error.
        assert_eq!(
            classify_io(&io::Error::from_raw_os_error(libc::ENFILE)),
            ErrorKind::LocalLimit
        );
        // The target's answers stay the target's.
        let refused = said(
            io::Error::from_raw_os_error(libc::ECONNREFUSED),
            "h:1",
            None,
        );
        assert_eq!(classify_io(&refused), ErrorKind::ConnectRefused);
    }

    #[test]
    fn a_run_past_the_ports_of_its_addresses_is_warned_before_it_starts() {
        let Some((low, high)) = local_port_range() else {
            return; // not Linux: nothing to say before the run
        };
        let ports = u64::from(high - low + 1);
        let one = SourcePool::default();
        assert_eq!(shortfall(&one, ports, "ws://t/"), None);
        let said = shortfall(&one, ports + 1, "ws://t/").expect("one address short");
        assert!(
            said.starts_with(&format!("{} users each hold a connection to ws://t/, but one local address has {ports} local ports", ports + 1)),
            "{said}"
        );
        let two = SourcePool::new(vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([127, 0, 0, 2]),
        ]);
        assert_eq!(shortfall(&two, 2 * ports, "ws://t/"), None);
        assert!(
            shortfall(&two, 2 * ports + 1, "ws://t/")
                .is_some_and(|s| s.contains("each of 2 local addresses"))
        );
    }

    #[tokio::test]
    async fn a_source_address_this_machine_lacks_is_the_scenarios_mistake() {
        // 192.0.2.1 (TEST-NET-1) is on no interface here.
        let e = connect("127.0.0.1:9", Some(IpAddr::from([192, 0, 2, 1])))
            .await
            .expect_err("cannot bind");
        assert!(
            e.to_string()
                .starts_with("cannot connect from 192.0.2.1 ([target] sources)"),
            "{e}"
        );
        assert!(!is_local_limit(&e));
    }
}

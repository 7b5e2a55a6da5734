//! What this machine's kernel counted of TCP during a run (Linux, `/proc/net/netstat`, the
//! network namespace chatload runs in): SYNs it sent again because no answer came, and
//! connections a listener on this machine dropped at a full accept queue. A connect whose
//! SYN went unanswered waits a second for the retransmission (then 3, 7, …), so connect and
//! reconnect latencies near 1 s are this, not the target's work: the report says so beside
//! them. Owns reading and subtracting the counters; not what a report makes of them.
//!
//! The counters are the whole namespace's, any process's: on a machine that does nothing
//! else during the run they are the run's.

use serde::{Deserialize, Serialize};

/// Counts over one run: the difference of two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelTcp {
    /// `TcpExt: TCPSynRetrans`: SYNs this machine sent again (connects left unanswered: a
    /// full accept queue at the target, a filter, loss on the way).
    pub syn_retransmits: u64,
    /// `TcpExt: ListenOverflows`: connections a listener on this machine could not queue
    /// (the target's, when it runs here).
    pub listen_overflows: u64,
}

impl KernelTcp {
    /// The counters now; `None` where the system does not say.
    pub fn read() -> Option<KernelTcp> {
        parse(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    /// What was counted between `self` (earlier) and `later`.
    pub fn until(self, later: KernelTcp) -> KernelTcp {
        KernelTcp {
            syn_retransmits: later.syn_retransmits.saturating_sub(self.syn_retransmits),
            listen_overflows: later.listen_overflows.saturating_sub(self.listen_overflows),
        }
    }

    pub fn add(&mut self, other: &KernelTcp) {
        self.syn_retransmits += other.syn_retransmits;
        self.listen_overflows += other.listen_overflows;
    }
}

/// `/proc/net/netstat` holds pairs of lines: `TcpExt: Name1 Name2 …` then
/// `TcpExt: value1 value2 …`.
fn parse(text: &str) -> Option<KernelTcp> {
    let mut lines = text.lines();
    while let Some(names) = lines.next() {
        let values = lines.next()?;
        let (Some(names), Some(values)) = (
            names.strip_prefix("TcpExt:"),
            values.strip_prefix("TcpExt:"),
        ) else {
            continue;
        };
        let field = |wanted: &str| {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .find(|(name, _)| *name == wanted)
                .and_then(|(_, value)| value.parse::<u64>().ok())
        };
        return Some(KernelTcp {
            syn_retransmits: field("TCPSynRetrans")?,
            listen_overflows: field("ListenOverflows")?,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_two_counters_from_their_pair_of_lines() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 5 13777 13777 42\n\
                    IpExt: InNoRoutes InOctets\n\
                    IpExt: 0 123\n";
        let read = parse(text).expect("parsed");
        assert_eq!(
            read,
            KernelTcp {
                syn_retransmits: 42,
                listen_overflows: 13_777
            }
        );
        let later = KernelTcp {
            syn_retransmits: 50,
            listen_overflows: 13_777,
        };
        assert_eq!(
            read.until(later),
            KernelTcp {
                syn_retransmits: 8,
                listen_overflows: 0
            }
        );
        assert_eq!(parse("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(parse("TcpExt: A B\nTcpExt: 1\n"), None);
    }

    /// Against this machine's kernel: connections past a listener's accept queue that
    /// nobody accepts are counted, and their SYNs sent again.
    #[tokio::test]
    async fn counts_a_full_accept_queue_on_this_machine() {
        let Some(before) = KernelTcp::read() else {
            return; // not Linux
        };
        // A backlog of 1: the third connect waits.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut waiting = Vec::new();
        for _ in 0..4 {
            waiting.push(tokio::spawn(tokio::time::timeout(
                std::time::Duration::from_millis(1_500),
                tokio::net::TcpStream::connect(addr),
            )));
        }
        for w in waiting {
            let _ = w.await;
        }
        let counted = before.until(KernelTcp::read().expect("read again"));
        assert!(counted.listen_overflows >= 1, "{counted:?}");
        assert!(counted.syn_retransmits >= 1, "{counted:?}");
        drop(listener);
    }
}

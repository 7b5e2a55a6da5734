//! The delay knob's clock: deliveries wait on one OS thread whose sleep is precise to tens of
//! microseconds, where the async timer would round every delay up to the next millisecond
//! and add that error to the latency a test compares with the truth.

use super::hub::Outbound;
use super::outbox::OutboxSender;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Delayed {
    due: Instant,
    order: u64,
    conn: OutboxSender,
    out: Outbound,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.order) == (other.due, other.order)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.order).cmp(&(other.due, other.order))
    }
}

/// Hands each frame to its connection at its due time. Stops when dropped.
pub struct DelayLine {
    tx: mpsc::Sender<(OutboxSender, Outbound)>,
}

impl DelayLine {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<(OutboxSender, Outbound)>();
        std::thread::Builder::new()
            .name("chatload-delay".into())
            .spawn(move || run(rx))?;
        Ok(DelayLine { tx })
    }

    pub fn push(&self, conn: OutboxSender, out: Outbound) {
        // The thread only ends after every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send((conn, out));
    }
}

fn run(rx: mpsc::Receiver<(OutboxSender, Outbound)>) {
    let mut heap: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let wait = heap.peek().map_or(Duration::from_secs(1), |Reverse(d)| {
            d.due.saturating_duration_since(Instant::now())
        });
        let mut enqueue = |(conn, out): (OutboxSender, Outbound)| {
            order += 1;
            heap.push(Reverse(Delayed {
                due: out.due,
                order,
                conn,
                out,
            }));
        };
        match rx.recv_timeout(wait) {
            Ok(item) => {
                enqueue(item);
                while let Ok(item) = rx.try_recv() {
                    enqueue(item);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if heap.is_empty() => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|Reverse(d)| d.due <= now) {
            if let Some(Reverse(d)) = heap.pop() {
                let _ = d.conn.send(d.out);
            }
        }
    }
}

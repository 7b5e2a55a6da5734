//! Each virtual user's inbox: the orders the pacer hands it at their intended times,
//! waiting until the user's task takes them. Owns the hand-over and the wake-up; what a user
//! does with an order is `vu`'s.
//!
//! A run holds one inbox per person of the population, mostly idle, so an empty inbox must
//! cost little: a bounded tokio channel allocates a block of 32 orders (1.8 KB) up front,
//! this holds a lock, a notifier and a queue that allocates on first use (about 70 bytes
//! until then, a few hundred after).

use crate::workload::Order;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use tokio::sync::Notify;

/// Scheduled messages a user may have waiting while it cannot send (disconnected).
pub const INBOX_CAPACITY: usize = 256;

#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Order>>,
    ready: Notify,
    /// The run is over: a waiting user is woken to leave. Carried by each user's own inbox
    /// rather than one token all users wait on, whose shared lock every wait would take.
    stopped: AtomicBool,
}

impl Inbox {
    /// Queues `order` and wakes the user; gives it back when the inbox is full.
    pub fn offer(&self, order: Order) -> Result<(), Order> {
        {
            let Ok(mut q) = self.queue.lock() else {
                return Err(order);
            };
            if q.len() >= INBOX_CAPACITY {
                return Err(order);
            }
            q.push_back(order);
        }
        // A permit is kept if the user is not waiting yet, so no hand-over is missed.
        self.ready.notify_one();
        Ok(())
    }

    /// Wakes the user for good: its waits return `None` from now on.
    pub fn stop(&self) {
        self.stopped.store(true, Relaxed);
        self.ready.notify_one();
    }

    /// The oldest waiting order, if any, without waiting.
    pub fn try_take(&self) -> Option<Order> {
        self.queue.lock().ok()?.pop_front()
    }

    /// Waits for the next order; `None` once the inbox is stopped. Cancel-safe: an order
    /// leaves the queue only when returned, and a wake-up taken by a cancelled wait passes on
    /// to the next one.
    pub async fn take(&self) -> Option<Order> {
        loop {
            if self.stopped.load(Relaxed) {
                return None;
            }
            if let Some(order) = self.try_take() {
                return Some(order);
            }
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Recipient;
    use crate::workload::schedule::Action;
    use std::sync::Arc;
    use std::time::Duration;

    fn order(id: u64) -> Order {
        Order {
            intended_us: id,
            id,
            pattern: 0,
            sender: 1,
            to: Recipient::User(2),
            size: 10,
            action: Action::Typing,
        }
    }

    #[test]
    fn orders_come_out_in_order_and_a_full_inbox_refuses() {
        let inbox = Inbox::default();
        for id in 0..INBOX_CAPACITY as u64 {
            assert!(inbox.offer(order(id)).is_ok());
        }
        assert_eq!(inbox.offer(order(999)).map_err(|o| o.id), Err(999));
        for id in 0..INBOX_CAPACITY as u64 {
            assert_eq!(inbox.try_take().map(|o| o.id), Some(id));
        }
        assert!(inbox.try_take().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_user_wakes_for_an_order_from_another_thread() {
        let inbox = Arc::new(Inbox::default());
        let waiter = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.take().await.map(|o| o.id) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pacer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.offer(order(7)).is_ok())
        };
        assert!(pacer.join().unwrap());
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Some(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_inbox_wakes_its_waiting_user_for_good() {
        let inbox = Arc::new(Inbox::default());
        let waiter = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.take().await.map(|o| o.id) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        inbox.offer(order(1)).unwrap();
        inbox.stop();
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        let first = got.unwrap().unwrap();
        // The waiter may have taken the order before the stop, or seen the stop first.
        assert!(first == Some(1) || first.is_none(), "{first:?}");
        assert_eq!(inbox.take().await, None);
    }

    #[tokio::test]
    async fn a_wake_up_taken_by_a_cancelled_wait_is_not_lost() {
        let inbox = Inbox::default();
        // A wait that loses a race (as in the user's select!) and is dropped.
        tokio::select! {
            biased;
            _ = std::future::ready(()) => {}
            _ = inbox.take() => unreachable!(),
        }
        inbox.offer(order(3)).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), inbox.take()).await;
        assert_eq!(got.map(|o| o.map(|o| o.id)), Ok(Some(3)));
        // Many orders offered while nobody waits: all are there for the next waits.
        for id in 10..20 {
            inbox.offer(order(id)).unwrap();
        }
        for id in 10..20 {
            let got = tokio::time::timeout(Duration::from_secs(1), inbox.take()).await;
            assert_eq!(got.map(|o| o.map(|o| o.id)), Ok(Some(id)));
        }
    }
}

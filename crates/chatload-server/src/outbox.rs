//! One connection's queue of frames to write: the hub (and the delay line) push from any
//! thread, the connection's own task takes everything queued at once. It owns only the queue
//! and its wake-up; what a frame means and when it is written belong to `connection`.
//!
//! Why not a tokio unbounded channel: its first block of 32 slots (2.3 KB of `Outbound`s) is
//! allocated with the channel, so every idle connection paid for it; this queue allocates on
//! its first frame. The lock is the connection's own, held for one push or one swap.

use super::hub::Outbound;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

struct Shared {
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Outbound>,
    /// The connection has ended: nothing more is taken.
    closed: bool,
}

/// Where the hub puts a connection's frames; cheap to clone.
#[derive(Clone)]
pub struct OutboxSender(Arc<Shared>);

/// The connection's end: takes the frames. Dropping it closes the queue.
pub struct OutboxReceiver(Arc<Shared>);

pub fn outbox() -> (OutboxSender, OutboxReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
    });
    (OutboxSender(shared.clone()), OutboxReceiver(shared))
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    shared.queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl OutboxSender {
    /// Queues a frame; gives it back when the connection has ended.
    pub fn send(&self, frame: Outbound) -> Result<(), Outbound> {
        let mut queue = lock(&self.0);
        if queue.closed {
            return Err(frame);
        }
        queue.frames.push_back(frame);
        // The receiver takes everything when woken, so only the first frame of a batch
        // needs to wake it.
        let first = queue.frames.len() == 1;
        drop(queue);
        if first {
            self.0.ready.notify_one();
        }
        Ok(())
    }
}

impl OutboxReceiver {
    /// Waits until at least one frame is queued. Cancel-safe: a wake-up this future took
    /// before it was dropped is kept for the next call.
    pub async fn ready(&self) {
        loop {
            let notified = self.0.ready.notified();
            if !lock(&self.0).frames.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Moves every queued frame, in order, to the end of `into`.
    pub fn take_into(&self, into: &mut VecDeque<Outbound>) {
        let mut queue = lock(&self.0);
        if into.is_empty() {
            // The two buffers trade places: no copy, and no allocation once both have grown.
            std::mem::swap(into, &mut queue.frames);
        } else {
            into.extend(queue.frames.drain(..));
        }
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        let mut queue = lock(&self.0);
        queue.closed = true;
        queue.frames = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str) -> Outbound {
        Outbound::control(text.to_string().into())
    }

    #[tokio::test]
    async fn frames_arrive_in_order_and_a_closed_queue_gives_them_back() {
        let (tx, rx) = outbox();
        let mut got = VecDeque::new();
        tx.send(frame("a")).map_err(|_| ()).unwrap();
        tx.send(frame("b")).map_err(|_| ()).unwrap();
        rx.ready().await;
        rx.take_into(&mut got);
        tx.send(frame("c")).map_err(|_| ()).unwrap();
        rx.ready().await;
        rx.take_into(&mut got);
        let texts: Vec<_> = got.iter().map(|o| o.text.to_string()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
        drop(rx);
        assert!(tx.send(frame("d")).is_err(), "the connection has ended");
    }

    #[tokio::test]
    async fn a_wake_up_taken_by_a_dropped_wait_is_not_lost() {
        let (tx, rx) = outbox();
        {
            // A select! branch that lost: its wait is dropped after the frame was queued.
            let wait = rx.ready();
            tx.send(frame("x")).map_err(|_| ()).unwrap();
            drop(wait);
        }
        let woke = tokio::time::timeout(std::time::Duration::from_secs(1), rx.ready()).await;
        assert!(woke.is_ok(), "the queued frame wakes the next wait");
        let mut got = VecDeque::new();
        rx.take_into(&mut got);
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_sender_on_another_thread_wakes_the_receiver() {
        let (tx, rx) = outbox();
        let sender = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(frame(&i.to_string())).map_err(|_| ()).unwrap();
            }
        });
        let mut got = VecDeque::new();
        while got.len() < 1000 {
            tokio::time::timeout(std::time::Duration::from_secs(5), rx.ready())
                .await
                .expect("woken");
            rx.take_into(&mut got);
        }
        sender.join().unwrap();
        let in_order = got
            .iter()
            .enumerate()
            .all(|(i, o)| o.text.as_str() == i.to_string());
        assert!(in_order, "frames keep their order");
    }
}

//! Full-duplex WebSocket writing for one task that also reads: frames wait in a small queue
//! and are written only while the socket can take them, so a task never blocks on a write
//! while its peer blocks on one too. Owns the write queue and the choice between reading
//! and writing; not the meaning of any frame.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Small buffers: thousands of connections each hold these. A 1 KiB read buffer (4 KiB
/// before) took the reference server from 10.9 to 7.9 KiB per connection and cost less CPU
/// per message, not more (docs/performance.md, Connections); a larger frame grows it as
/// needed, up to `max_frame` bytes (a message of several frames too), beyond which the peer
/// decided the size and the connection ends instead.
pub fn small_buffers(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(64 * 1024 * 1024)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// Frames written per wake-up before yielding to the reader, so reading keeps pace.
const BATCH: usize = 64;
/// Frames read in a row, while frames wait to be written, before the writing goes first: a
/// peer that sends without pause must not keep its own answers from ever leaving.
const READS_BEFORE_WRITE: u8 = 16;

/// A WebSocket that one task both reads and writes, whole: no split halves, so no lock
/// between them on every poll (the split's `BiLock` was 2–3% of the client's CPU per
/// message). Frames to send wait in a queue and go out only while the socket takes them.
pub struct Duplex<W> {
    ws: W,
    queue: VecDeque<Message>,
    /// Payload bytes in `queue`, so a side can bound what a peer that stops reading makes
    /// it hold.
    queued_bytes: usize,
    unflushed: bool,
    reads_in_a_row: u8,
}

/// What became of a [`Duplex::event`] wait: a frame read (`None`: the stream ended), or
/// queued frames written.
pub enum Event {
    Read(Option<Result<Message, WsError>>),
    Wrote(Result<(), WsError>),
}

impl<W> Duplex<W>
where
    W: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    pub fn new(ws: W) -> Self {
        Duplex {
            ws,
            queue: VecDeque::new(),
            queued_bytes: 0,
            unflushed: false,
            reads_in_a_row: 0,
        }
    }

    pub fn get_ref(&self) -> &W {
        &self.ws
    }

    pub fn push(&mut self, frame: Message) {
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
    }

    /// Frames waiting to be written (the tests' view; the sides bound bytes, not frames).
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Payload bytes of the frames waiting to be written (not what the socket already took).
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// True while frames wait or written frames are not yet flushed.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.unflushed
    }

    /// The next frame read, or some progress writing the queue, whichever comes first;
    /// reading first, except after [`READS_BEFORE_WRITE`] reads in a row with frames
    /// waiting. Cancel-safe: a frame leaves the queue only once the socket has accepted it,
    /// and a partly read frame stays in the socket's buffer.
    pub async fn event(&mut self) -> Event {
        poll_fn(|cx| {
            if self.has_work()
                && self.reads_in_a_row >= READS_BEFORE_WRITE
                && let Poll::Ready(r) = self.poll_progress(cx)
            {
                self.reads_in_a_row = 0;
                return Poll::Ready(Event::Wrote(r));
            }
            if let Poll::Ready(r) = self.ws.poll_next_unpin(cx) {
                self.reads_in_a_row = self.reads_in_a_row.saturating_add(1);
                return Poll::Ready(Event::Read(r));
            }
            if self.has_work()
                && let Poll::Ready(r) = self.poll_progress(cx)
            {
                self.reads_in_a_row = 0;
                return Poll::Ready(Event::Wrote(r));
            }
            Poll::Pending
        })
        .await
    }

    /// The next frame read, writing nothing meanwhile (for a strict request and answer,
    /// such as a log-in).
    pub async fn recv(&mut self) -> Option<Result<Message, WsError>> {
        self.ws.next().await
    }

    /// Writes everything queued and flushes it.
    pub async fn write_all(&mut self) -> Result<(), WsError> {
        while self.has_work() {
            poll_fn(|cx| self.poll_progress(cx)).await?;
        }
        Ok(())
    }

    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut written = 0;
        while !self.queue.is_empty() && written < BATCH {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if written > 0 => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            if let Some(frame) = self.queue.pop_front() {
                self.queued_bytes -= frame.len();
                self.ws.start_send_unpin(frame)?;
                self.unflushed = true;
                written += 1;
            }
        }
        if written > 0 && !self.queue.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if self.unflushed {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if written > 0 => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Writes everything queued, then a close frame; bounded by the caller's timeout.
    pub async fn close(&mut self) -> Result<(), WsError> {
        self.write_all().await?;
        self.ws.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::Pin;

    /// A peer that always has another frame to read and always takes what is written.
    #[derive(Default)]
    struct Flooding {
        written: usize,
    }

    impl Stream for Flooding {
        type Item = Result<Message, WsError>;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(Some(Ok(Message::text("ping"))))
        }
    }

    impl Sink<Message> for Flooding {
        type Error = WsError;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
        fn start_send(mut self: Pin<&mut Self>, _: Message) -> Result<(), WsError> {
            self.written += 1;
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), WsError>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_peer_that_never_pauses_still_gets_its_answers() {
        let mut d = Duplex::new(Flooding::default());
        let mut reads = 0;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..100 {
            let event = std::pin::pin!(d.event()).poll(&mut cx);
            match event {
                Poll::Ready(Event::Read(_)) => {
                    reads += 1;
                    d.push(Message::text("pong"));
                }
                Poll::Ready(Event::Wrote(r)) => assert!(r.is_ok()),
                Poll::Pending => panic!("everything here is ready"),
            }
        }
        // Each 16 reads in a row make way for one write turn (up to 64 frames and a flush).
        assert!(d.ws.written >= 80, "written {} of {reads}", d.ws.written);
        assert!(d.queued() <= READS_BEFORE_WRITE as usize, "{}", d.queued());
        assert_eq!(d.queued_bytes(), 4 * d.queued());
    }
}

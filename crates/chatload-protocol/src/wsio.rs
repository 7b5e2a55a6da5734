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
/// per message, not more (README, Connections); a larger frame grows it as needed.
pub fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(64 * 1024 * 1024)
        .max_message_size(Some(4 * 1024 * 1024))
        .max_frame_size(Some(4 * 1024 * 1024))
}

/// Frames written per wake-up before yielding to the reader, so reading keeps pace.
const BATCH: usize = 64;

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
        }
    }

    pub fn push(&mut self, frame: Message) {
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
    }

    pub fn queued(&self) -> usize {
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
    /// reading first. Cancel-safe: a frame leaves the queue only once the socket has
    /// accepted it, and a partly read frame stays in the socket's buffer.
    pub async fn event(&mut self) -> Event {
        poll_fn(|cx| {
            if let Poll::Ready(r) = self.ws.poll_next_unpin(cx) {
                return Poll::Ready(Event::Read(r));
            }
            if self.has_work() {
                return self.poll_progress(cx).map(Event::Wrote);
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

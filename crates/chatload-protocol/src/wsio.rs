//! Full-duplex WebSocket writing for one task that also reads: frames wait in a small queue
//! and are written only while the socket can take them, so a task never blocks on a write
//! while its peer blocks on one too. Owns the write queue; not the meaning of any frame.

use futures_util::{Sink, SinkExt, stream::SplitSink};
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

pub struct QueuedWriter<S> {
    sink: SplitSink<S, Message>,
    queue: VecDeque<Message>,
    unflushed: bool,
}

impl<S> QueuedWriter<S>
where
    SplitSink<S, Message>: Sink<Message, Error = WsError> + Unpin,
{
    pub fn new(sink: SplitSink<S, Message>) -> Self {
        QueuedWriter {
            sink,
            queue: VecDeque::new(),
            unflushed: false,
        }
    }

    pub fn push(&mut self, frame: Message) {
        self.queue.push_back(frame);
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// True while frames wait or written frames are not yet flushed.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || self.unflushed
    }

    /// Writes what the socket will take now; resolves after some progress. Cancel-safe: a
    /// frame leaves the queue only once the sink has accepted it.
    pub async fn progress(&mut self) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_progress(cx)).await
    }

    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let mut written = 0;
        while !self.queue.is_empty() && written < BATCH {
            match self.sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if written > 0 => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            if let Some(frame) = self.queue.pop_front() {
                self.sink.start_send_unpin(frame)?;
                self.unflushed = true;
                written += 1;
            }
        }
        if written > 0 && !self.queue.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if self.unflushed {
            match self.sink.poll_flush_unpin(cx) {
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
        while self.has_work() {
            self.progress().await?;
        }
        self.sink.close().await
    }
}

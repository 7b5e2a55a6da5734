//! A WebSocket over an async byte stream for a connection that one task both reads and writes
//! ([`crate::wsio::Duplex`]): tungstenite's own protocol state (`WebSocketContext`: framing,
//! masking, fragments, control frames, the close handshake, the size limits) driven with the
//! polling task's waker. Owns only that bridge between polling and tungstenite's blocking-style
//! calls; not the frames' meaning, nor the opening handshake.
//!
//! Why not tokio-tungstenite's `WebSocketStream`: it lets two tasks share a connection, so on
//! every poll it stores the caller's waker in one of two `AtomicWaker`s and hands the socket
//! a proxy waker that wakes both; readiness then wakes the task through the proxy. For one
//! task that was about 8% of the client's user-space CPU per chat message at 10,000 msg/s
//! (`AtomicWaker::register` on each read, the proxy's wake on each readiness;
//! docs/performance.md, "CPU per chat message, next to k6"). Here a read or a write polls the
//! socket with the caller's own context, which registers the task directly with the reactor.

use futures_util::{Sink, Stream};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A WebSocket on `S`, read and written by the one task that polls it.
pub struct WsStream<S> {
    io: S,
    ws: WebSocketContext,
    /// A close frame is queued; closing now drives its flush and the peer's answer.
    closing: bool,
    /// The stream has ended (closed, or an error was returned): it reads as ended from now on.
    ended: bool,
    /// False while a write found the socket full: the next `poll_ready` flushes first.
    ready: bool,
}

/// The socket seen through `std::io` for one poll: `Pending` reads as `WouldBlock`, having
/// registered `cx`'s waker for the readiness it waits on.
struct Polled<'a, 'b, S> {
    io: &'a mut S,
    cx: &'a mut Context<'b>,
}

impl<S: AsyncRead + Unpin> Read for Polled<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncWrite + Unpin> Write for Polled<'_, '_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// tungstenite's `WouldBlock` is the socket's `Pending`.
fn polled<T>(r: Result<T, WsError>) -> Poll<Result<T, WsError>> {
    match r {
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        r => Poll::Ready(r),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// A WebSocket on `io` after its opening handshake, `part` being the bytes read past the
    /// handshake's end (frames the peer sent right after it).
    pub fn from_partially_read(
        io: S,
        part: Vec<u8>,
        role: Role,
        config: Option<WebSocketConfig>,
    ) -> Self {
        WsStream {
            io,
            ws: WebSocketContext::from_partially_read(part, role, config),
            closing: false,
            ended: false,
            ready: true,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// Runs one tungstenite call against the socket, polled with `cx`.
    fn with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocketContext, &mut Polled<'_, '_, S>) -> Result<T, WsError>,
    ) -> Result<T, WsError> {
        let mut io = Polled {
            io: &mut self.io,
            cx,
        };
        f(&mut self.ws, &mut io)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WsStream<S> {
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(polled(self.with(cx, |ws, io| ws.read(io)))) {
            Ok(message) => Poll::Ready(Some(Ok(message))),
            Err(e) => {
                self.ended = true;
                match e {
                    WsError::AlreadyClosed | WsError::ConnectionClosed => Poll::Ready(None),
                    e => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WsStream<S> {
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        let flushed = std::task::ready!(polled(self.with(cx, |ws, io| ws.flush(io))));
        self.ready = true;
        Poll::Ready(flushed)
    }

    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), WsError> {
        // tungstenite writes to the socket here only once its buffer is past its size; a
        // full socket then leaves the frame buffered and `ready` false, and the next
        // `poll_ready` or `poll_flush` writes it with a real waker. No waker is needed here.
        let mut cx = Context::from_waker(Waker::noop());
        match self.with(&mut cx, |ws, io| ws.write(io, message)) {
            Ok(()) => {
                self.ready = true;
                Ok(())
            }
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ready = false;
                Ok(())
            }
            Err(e) => {
                self.ready = true;
                Err(e)
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let flushed = std::task::ready!(polled(self.with(cx, |ws, io| ws.flush(io))));
        self.ready = true;
        match flushed {
            // The close handshake has just finished: flushing is complete.
            Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            r => Poll::Ready(r),
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.ready = true;
        let closing = self.closing;
        let r = self.with(cx, |ws, io| {
            if closing {
                ws.flush(io)
            } else {
                ws.close(io, None)
            }
        });
        match r {
            Ok(()) | Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.closing = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    /// Every exchange here ends within 10 s or the test fails (a stalled wake-up would
    /// otherwise hang it).
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(10), f)
            .await
            .expect("the exchange ended within 10s")
    }

    fn config(max: usize) -> Option<WebSocketConfig> {
        Some(
            WebSocketConfig::default()
                .read_buffer_size(64)
                .max_message_size(Some(max))
                .max_frame_size(Some(max)),
        )
    }

    /// A client `WsStream` and a server `WsStream` over an in-memory pipe of `capacity` bytes.
    fn pair(
        capacity: usize,
    ) -> (
        WsStream<tokio::io::DuplexStream>,
        WsStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(capacity);
        (
            WsStream::from_partially_read(a, Vec::new(), Role::Client, config(1 << 20)),
            WsStream::from_partially_read(b, Vec::new(), Role::Server, config(1 << 20)),
        )
    }

    /// A client `WsStream` (frames up to `max` bytes, `part` read with the handshake) and
    /// the raw bytes of its peer.
    fn client_facing_raw(
        part: Vec<u8>,
        max: usize,
    ) -> (WsStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (a, raw) = tokio::io::duplex(1024);
        let client = WsStream::from_partially_read(a, part, Role::Client, config(max));
        (client, raw)
    }

    #[tokio::test]
    async fn frames_cross_both_ways_even_through_a_pipe_smaller_than_a_frame() {
        within(async {
            // 100 bytes of pipe against 2 KiB frames: every write and read waits on the other
            // side, so each must wake its task through the socket alone.
            let (mut client, mut server) = pair(100);
            let big = "x".repeat(2048);
            let sent = big.clone();
            let writer = tokio::spawn(async move {
                for i in 0..50 {
                    client
                        .send(Message::text(format!("{i}:{sent}")))
                        .await
                        .unwrap();
                }
                let echoed = client.next().await.unwrap().unwrap();
                (client, echoed)
            });
            for i in 0..50 {
                let m = server.next().await.unwrap().unwrap();
                assert_eq!(m, Message::text(format!("{i}:{big}")));
            }
            server.send(Message::binary(vec![7u8; 300])).await.unwrap();
            let (_client, echoed) = writer.await.unwrap();
            assert_eq!(echoed, Message::binary(vec![7u8; 300]));
        })
        .await
    }

    #[tokio::test]
    async fn the_client_masks_what_it_writes_and_the_peer_sees_rfc_6455_bytes() {
        within(async {
            let (mut client, mut raw) = client_facing_raw(Vec::new(), 1024);
            client.send(Message::text("hi")).await.unwrap();
            let mut head = [0u8; 8];
            raw.read_exact(&mut head).await.unwrap();
            // FIN + text, masked, length 2, a 4-byte key, then "hi" masked with it.
            assert_eq!(head[0], 0x81);
            assert_eq!(head[1], 0x80 | 2);
            let key = [head[2], head[3], head[4], head[5]];
            assert_eq!([head[6] ^ key[0], head[7] ^ key[1]], *b"hi");
            // An unmasked frame from the server reads as the client expects.
            raw.write_all(&[0x81, 3, b'y', b'o', b'u']).await.unwrap();
            assert_eq!(client.next().await.unwrap().unwrap(), Message::text("you"));
        })
        .await
    }

    #[tokio::test]
    async fn a_ping_is_answered_and_a_close_ends_the_stream_after_the_handshake() {
        within(async {
            let (mut client, mut server) = pair(4096);
            server
                .send(Message::Ping(b"p".to_vec().into()))
                .await
                .unwrap();
            server
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "bye".into(),
                })))
                .await
                .unwrap();
            // The client sees the ping, then the close with its reason, then the end.
            assert!(matches!(client.next().await, Some(Ok(Message::Ping(_)))));
            match client.next().await {
                Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.reason.as_str(), "bye"),
                other => panic!("expected the close frame, got {other:?}"),
            }
            client.flush().await.unwrap();
            // The server had its pong and the close's answer, and its side is done.
            assert!(matches!(server.next().await, Some(Ok(Message::Pong(_)))));
            assert!(matches!(server.next().await, Some(Ok(Message::Close(_)))));
            assert!(server.next().await.is_none());
            // A client waits for the server to close the TCP connection (RFC 6455 section 7.1.1).
            drop(server);
            assert!(client.next().await.is_none());
        })
        .await
    }

    #[tokio::test]
    async fn a_frame_past_the_limit_is_an_error_and_the_stream_ends() {
        within(async {
            let (mut client, mut raw) = client_facing_raw(Vec::new(), 16);
            // A header announcing 1 MiB: refused from the header, before any payload.
            raw.write_all(&[0x82, 127, 0, 0, 0, 0, 0, 0x10, 0, 0])
                .await
                .unwrap();
            match client.next().await {
                Some(Err(WsError::Capacity(_))) => {}
                other => panic!("expected a capacity error, got {other:?}"),
            }
            assert!(client.next().await.is_none());
        })
        .await
    }

    #[tokio::test]
    async fn a_peer_gone_without_a_close_is_a_reset_and_bytes_after_the_handshake_are_kept() {
        within(async {
            // The peer's first frame arrived with the handshake's answer.
            let (mut client, mut raw) = client_facing_raw(vec![0x81, 2, b'o', b'k'], 1024);
            assert_eq!(client.next().await.unwrap().unwrap(), Message::text("ok"));
            raw.shutdown().await.unwrap();
            drop(raw);
            match client.next().await {
                Some(Err(WsError::Protocol(p))) => {
                    assert!(p.to_string().contains("closing handshake"), "{p}")
                }
                other => panic!("expected a reset, got {other:?}"),
            }
        })
        .await
    }
}

//! WebSocket transport: connect, say hello, and hand back the two halves of the socket.
//! Owns connection setup and classifying what went wrong; the virtual user owns the rest.

use crate::metrics::ErrorKind;
use crate::protocol;
use crate::wsio::{QueuedWriter, small_buffers};
use futures_util::{SinkExt, StreamExt, stream::SplitStream};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected, greeted session.
pub struct WsConnection {
    pub reader: SplitStream<Socket>,
    pub writer: QueuedWriter<Socket>,
    /// Frames that arrived with the greeting (resumed deliveries), in order.
    pub early: Vec<Message>,
}

/// Why a connection could not be set up, by kind, with the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectError {
    pub kind: ErrorKind,
    pub detail: String,
}

pub fn classify(e: &WsError) -> ErrorKind {
    match e {
        WsError::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionAborted => ErrorKind::ConnectionReset,
            std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
            _ => ErrorKind::ConnectFailed,
        },
        WsError::ConnectionClosed | WsError::AlreadyClosed => ErrorKind::ConnectionClosed,
        // The peer went away without a close frame: a reset, as far as a client can tell.
        WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ) => ErrorKind::ConnectionReset,
        WsError::Protocol(_) | WsError::Utf8(_) | WsError::Capacity(_) => ErrorKind::Protocol,
        _ => ErrorKind::ConnectFailed,
    }
}

/// Connects to `url` as `user`, resuming after `last_seq`, within `timeout` overall.
pub async fn connect(
    url: &str,
    user: u32,
    last_seq: u64,
    timeout: Duration,
) -> Result<WsConnection, ConnectError> {
    let attempt = async {
        let (ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(small_buffers()), true)
                .await
                .map_err(|e| ConnectError {
                    kind: classify(&e),
                    detail: e.to_string(),
                })?;
        let (mut sink, mut reader) = ws.split();
        sink.send(Message::text(protocol::hello(user, last_seq)))
            .await
            .map_err(|e| ConnectError {
                kind: classify(&e),
                detail: e.to_string(),
            })?;
        let mut early = Vec::new();
        loop {
            match reader.next().await {
                Some(Ok(Message::Text(t))) => {
                    let op = protocol::decode(&t).map(|f| f.op.into_owned());
                    match op.as_deref() {
                        Ok("hello_ok") => break,
                        Ok("error") => {
                            return Err(ConnectError {
                                kind: ErrorKind::ServerError,
                                detail: format!("the server refused hello: {t}"),
                            });
                        }
                        _ => early.push(Message::Text(t)),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(ConnectError {
                        kind: classify(&e),
                        detail: e.to_string(),
                    });
                }
                None => {
                    return Err(ConnectError {
                        kind: ErrorKind::ConnectionClosed,
                        detail: "closed before hello_ok".into(),
                    });
                }
            }
        }
        Ok(WsConnection {
            reader,
            writer: QueuedWriter::new(sink),
            early,
        })
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError {
            kind: ErrorKind::ConnectTimeout,
            detail: format!("no hello_ok within {timeout:?}"),
        }),
    }
}

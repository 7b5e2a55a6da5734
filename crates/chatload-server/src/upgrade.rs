//! The server's side of the WebSocket opening handshake (RFC 6455 section 4.2): reads the
//! upgrade request, bounded in size, checks it, answers `101 Switching Protocols` and hands
//! over a [`WsStream`] together with whatever the client sent right behind its request.
//! Written here rather than taken from tokio-tungstenite so that the connection is a
//! `WsStream` polled by its one task (see that module for why), and so that a request that is
//! not an upgrade gets a `400` naming what is wrong instead of a dropped connection. Owns the
//! handshake only; how long it may take is the caller's (`--header-timeout`).

use chatload_protocol::ws_stream::WsStream;
use std::fmt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The longest request head taken: a client decides its size, and a real upgrade request is
/// a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// Header lines a request may carry.
const MAX_HEADERS: usize = 64;
/// What is read at a time while the head is incomplete.
const READ_CHUNK: usize = 1024;

/// Why a connection did not become a WebSocket.
#[derive(Debug)]
pub enum UpgradeError {
    /// The client closed or reset the connection, or the socket failed.
    Io(std::io::Error),
    /// The request was answered with a 4xx status, for the reason given.
    Refused(&'static str),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Io(e) => write!(f, "the connection failed during the upgrade: {e}"),
            UpgradeError::Refused(why) => write!(f, "the upgrade was refused: {why}"),
        }
    }
}

/// Reads and answers the upgrade request on `stream`.
pub async fn accept(
    mut stream: TcpStream,
    config: WebSocketConfig,
) -> Result<WsStream<TcpStream>, UpgradeError> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let (head_len, key) = loop {
        if buf.len() >= MAX_HEAD {
            return Err(refuse(&mut stream, 431, "the request head is longer than 16 KiB").await);
        }
        buf.reserve(READ_CHUNK.min(MAX_HEAD - buf.len()));
        let before = buf.len();
        let n = stream.read_buf(&mut buf).await.map_err(UpgradeError::Io)?;
        if n == 0 {
            return Err(UpgradeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        // Parsed only once the head can have ended: a client dripping its request a byte at
        // a time must not have the whole of it parsed again for every byte.
        if !ends_a_line_pair(&buf[before.saturating_sub(2)..]) {
            continue;
        }
        match check_request(&buf) {
            Ok(Some(done)) => break done,
            Ok(None) => continue,
            Err((status, why)) => return Err(refuse(&mut stream, status, why).await),
        }
    };
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream
        .write_all(answer.as_bytes())
        .await
        .map_err(UpgradeError::Io)?;
    let part = buf.split_off(head_len);
    Ok(WsStream::from_partially_read(
        stream,
        part,
        Role::Server,
        Some(config),
    ))
}

/// Whether `bytes` hold an empty line's end (`\n\n` or `\n\r\n`), which a request head ends
/// with.
fn ends_a_line_pair(bytes: &[u8]) -> bool {
    bytes
        .windows(2)
        .enumerate()
        .any(|(i, w)| w == b"\n\n" || (w == b"\n\r" && bytes.get(i + 2) == Some(&b'\n')))
}

/// The head's length and the client's key once `buf` holds a whole, valid upgrade request;
/// `None` while it is incomplete; the status and reason to refuse it with otherwise.
fn check_request(buf: &[u8]) -> Result<Option<(usize, String)>, (u16, &'static str)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err((431, "more than 64 header lines")),
        Err(_) => return Err((400, "the request is not HTTP/1.1")),
    };
    if request.method != Some("GET") {
        return Err((405, "a WebSocket upgrade is a GET"));
    }
    if request.version != Some(1) {
        return Err((400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    let headers = request.headers;
    // Every value of the header `name` (it may come more than once).
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let has_token = |name: &'static str, token: &str| {
        values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") {
        return Err((400, "no `Upgrade: websocket` header"));
    }
    if !has_token("connection", "upgrade") {
        return Err((400, "no `Connection: Upgrade` header"));
    }
    if !values("sec-websocket-version").any(|v| v.trim_ascii() == b"13") {
        return Err((426, "only WebSocket version 13 is spoken"));
    }
    let mut keys = values("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(one), None) => std::str::from_utf8(one.trim_ascii()).ok(),
        _ => None,
    };
    match key {
        Some(k) if !k.is_empty() => Ok(Some((head_len, k.to_string()))),
        _ => Err((400, "no single `Sec-WebSocket-Key` header")),
    }
}

/// Answers the refused request with `status` and `why` (best effort: the client may be gone)
/// and gives the error back.
async fn refuse(stream: &mut TcpStream, status: u16, why: &'static str) -> UpgradeError {
    let reason = match status {
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let version = if status == 426 {
        "Sec-WebSocket-Version: 13\r\n"
    } else {
        ""
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\n{version}Content-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
        why.len() + 1
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    UpgradeError::Refused(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::Message;

    const UPGRADE: &str = "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// Every exchange here ends within 10 s or the test fails (a handshake that waits for
    /// bytes that never come would otherwise hang it).
    async fn within<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("the exchange ended within 10 s")
    }

    /// A client socket, the server's side of it, and `accept` running on the server's side.
    async fn pair() -> (
        TcpStream,
        tokio::task::JoinHandle<Result<WsStream<TcpStream>, UpgradeError>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let accepting = tokio::spawn(accept(server, WebSocketConfig::default()));
        (client, accepting)
    }

    /// What the server wrote until it closed or `limit` bytes came.
    async fn answer(client: &mut TcpStream, limit: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while got.len() < limit {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    #[test]
    fn a_request_is_checked_as_rfc_6455_asks() {
        let complete = check_request(UPGRADE.as_bytes()).unwrap().unwrap();
        assert_eq!(
            complete,
            (UPGRADE.len(), "dGhlIHNhbXBsZSBub25jZQ==".to_string())
        );
        assert_eq!(check_request(&UPGRADE.as_bytes()[..40]), Ok(None));
        let refused = |text: String| check_request(text.as_bytes()).unwrap_err();
        assert_eq!(refused(UPGRADE.replace("GET", "POST")).0, 405);
        assert_eq!(refused(UPGRADE.replace("HTTP/1.1", "HTTP/1.0")).0, 400);
        assert_eq!(
            refused(UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c")),
            (400, "no `Upgrade: websocket` header")
        );
        assert_eq!(
            refused(UPGRADE.replace("keep-alive, Upgrade", "keep-alive")),
            (400, "no `Connection: Upgrade` header")
        );
        assert_eq!(refused(UPGRADE.replace("Version: 13", "Version: 8")).0, 426);
        assert_eq!(
            refused(UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")),
            (400, "no single `Sec-WebSocket-Key` header")
        );
        assert_eq!(
            refused(UPGRADE.replace(
                "Sec-WebSocket-Version",
                "Sec-WebSocket-Key: b\r\nSec-WebSocket-Version"
            )),
            (400, "no single `Sec-WebSocket-Key` header")
        );
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            refused(UPGRADE.replace("Host: x\r\n", &format!("Host: x\r\n{many}"))).0,
            431
        );
    }

    #[tokio::test]
    async fn an_upgrade_is_answered_and_frames_sent_behind_it_are_read() {
        within(async {
            let (mut client, accepting) = pair().await;
            // The request and a first masked text frame ("hi") in one write.
            let mut bytes = UPGRADE.as_bytes().to_vec();
            bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
            client.write_all(&bytes).await.unwrap();
            let mut ws = accepting.await.unwrap().unwrap();
            let head = answer(&mut client, 129).await;
            assert_eq!(
                head,
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            );
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
            ws.send(Message::text("ok")).await.unwrap();
            let mut frame = [0u8; 4];
            client.read_exact(&mut frame).await.unwrap();
            assert_eq!(frame, [0x81, 2, b'o', b'k'], "unmasked, from the server");
        })
        .await;
    }

    #[test]
    fn a_head_is_parsed_only_once_it_can_have_ended() {
        assert!(ends_a_line_pair(b"Host: x\r\n\r\n"));
        assert!(ends_a_line_pair(b"\n\r\n"));
        assert!(ends_a_line_pair(b"Host: x\n\n"));
        assert!(!ends_a_line_pair(b"Host: x\r\nUpgr"));
        assert!(!ends_a_line_pair(b"\n\r"));
    }

    #[tokio::test]
    async fn a_request_dripped_a_byte_at_a_time_is_answered() {
        within(async {
            let (mut client, accepting) = pair().await;
            client.set_nodelay(true).unwrap();
            for b in UPGRADE.as_bytes() {
                client.write_all(&[*b]).await.unwrap();
                client.flush().await.unwrap();
            }
            accepting.await.unwrap().unwrap();
            assert!(answer(&mut client, 12).await.starts_with("HTTP/1.1 101"));
        })
        .await;
    }

    #[tokio::test]
    async fn a_request_that_is_not_an_upgrade_is_answered_400_with_the_reason() {
        within(async {
            let (mut client, accepting) = pair().await;
            let request = UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c");
            client.write_all(request.as_bytes()).await.unwrap();
            let got = answer(&mut client, 4096).await;
            assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
            assert!(
                got.ends_with("\r\n\r\nno `Upgrade: websocket` header\n"),
                "{got}"
            );
            let err = accepting.await.unwrap().err().unwrap();
            assert_eq!(
                err.to_string(),
                "the upgrade was refused: no `Upgrade: websocket` header"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn a_head_past_16_kib_is_refused_without_holding_more() {
        within(async {
            let (mut client, accepting) = pair().await;
            // Exactly the bound, and never the head's end: all of it is read, so the server
            // closes without unread bytes (which would reset the connection under its answer).
            let mut request = b"GET /v1/ws HTTP/1.1\r\nX-Long: ".to_vec();
            request.resize(MAX_HEAD, b'a');
            client.write_all(&request).await.unwrap();
            let got = answer(&mut client, 4096).await;
            assert!(
                got.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
                "{got}"
            );
            assert!(matches!(
                accepting.await.unwrap(),
                Err(UpgradeError::Refused(_))
            ));
        })
        .await;
    }
}

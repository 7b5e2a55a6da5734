//! Opening a client WebSocket: TCP (from a chosen source address), TLS for `wss://`, and the
//! HTTP upgrade (RFC 6455 section 4.1) written and checked here rather than by tungstenite's
//! client handshake, which keeps the 4 KiB buffer it read the answer into as the
//! connection's read buffer for its whole life (4 KiB of every connected user's memory).
//! Here the answer is read into a scratch buffer that is dropped, and the connection starts
//! with the configured small read buffer and whatever followed the answer. A gateway may add
//! headers and offer subprotocols (the server must choose one it was offered). Owns the
//! handshake and what an answer that is not an upgrade means; not the frames after it.

use super::ConnectError;
use super::stamped_tcp::StampedTcp;
use super::tls::TlsContext;
use crate::metrics::ErrorKind;
use crate::wsio::small_buffers;
use chatload_protocol::ws_stream::WsStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub type Socket = WsStream<MaybeTlsStream<StampedTcp>>;

/// How long ago the newest bytes `socket` read reached this machine (see [`StampedTcp`]).
pub fn waited(socket: &Socket) -> Option<std::time::Duration> {
    match socket.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.waited(),
        MaybeTlsStream::Rustls(tls) => tls.get_ref().0.waited(),
        _ => None,
    }
}

/// `socket`'s arrival stamps in a cell of their own (see [`StampedTcp::share_stamps`]).
pub fn share_stamps(socket: &mut Socket) -> Option<Arc<AtomicU64>> {
    match socket.get_mut() {
        MaybeTlsStream::Plain(tcp) => Some(tcp.share_stamps()),
        MaybeTlsStream::Rustls(tls) => Some(tls.get_mut().0.share_stamps()),
        _ => None,
    }
}

/// The most an upgrade answer's status line and headers may take; a peer that sends more
/// without ending its headers is not a WebSocket server.
const MAX_ANSWER_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// What a gateway adds to the upgrade: headers (already rendered for the user) and the
/// subprotocols it offers; and the longest frame it may send (`None`: chatload's own
/// protocol's, [`crate::protocol::MAX_FRAME`]).
#[derive(Default)]
pub struct Extras {
    pub headers: Vec<(String, String)>,
    pub subprotocols: Vec<String>,
    pub max_frame: Option<usize>,
}

/// How far an opening got: the caller's timeout drops the opening itself, and its error must
/// still say what answered — nothing at all, or a TCP connection whose TLS or upgrade then
/// went unanswered (a server process that is stopped or overloaded still has its kernel
/// accept connections).
#[derive(Debug, Default)]
pub struct Progress(AtomicU8);

const TCP_PENDING: u8 = 0;
const TLS_PENDING: u8 = 1;
const UPGRADE_PENDING: u8 = 2;
const ANSWER_STARTED: u8 = 3;

impl Progress {
    fn reached(&self, stage: u8) {
        self.0.store(stage, Relaxed);
    }

    /// The error for an opening cut short by a timeout of `timeout`.
    pub fn timed_out(&self, timeout: std::time::Duration) -> ConnectError {
        let why = match self.0.load(Relaxed) {
            TCP_PENDING => format!(
                "no TCP connection within {timeout:?}: the connection request was not answered"
            ),
            TLS_PENDING => format!(
                "the TCP connection was accepted, but the TLS handshake did not finish within {timeout:?}"
            ),
            UPGRADE_PENDING => format!(
                "the TCP connection was accepted, but the WebSocket upgrade was not answered within {timeout:?}"
            ),
            _ => format!(
                "the target began answering the WebSocket upgrade but did not finish its headers within {timeout:?}"
            ),
        };
        ConnectError::new(ErrorKind::ConnectTimeout, why)
    }
}

/// Opens the WebSocket at `url` (`ws://` or `wss://`), bound to `source` when given.
pub async fn open(
    url: &str,
    tls: &TlsContext,
    source: Option<std::net::IpAddr>,
    progress: &Progress,
) -> Result<Socket, ConnectError> {
    open_with(url, tls, source, &Extras::default(), progress).await
}

/// As [`open`], with headers and subprotocols on the upgrade.
pub async fn open_with(
    url: &str,
    tls: &TlsContext,
    source: Option<std::net::IpAddr>,
    extras: &Extras,
    progress: &Progress,
) -> Result<Socket, ConnectError> {
    let failed = |why: String| ConnectError::new(ErrorKind::ConnectFailed, why);
    let u = reqwest::Url::parse(url).map_err(|e| failed(format!("{url}: {e}")))?;
    let secure = match u.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(failed(format!("{url}: `{other}` is not ws:// or wss://"))),
    };
    let (Some(host), Some(at)) = (u.host_str(), super::authority::Authority::of(url)) else {
        return Err(failed(format!("{url} has no host")));
    };
    let tcp = super::source::connect(&at.address(), source)
        .await
        .map_err(ConnectError::io)?;
    let _ = tcp.set_nodelay(true);
    let tcp = StampedTcp::new(tcp).map_err(ConnectError::io)?;
    progress.reached(if secure { TLS_PENDING } else { UPGRADE_PENDING });
    let mut stream = if secure {
        let name = rustls::pki_types::ServerName::try_from(at.host.clone())
            .map_err(|e| ConnectError::new(ErrorKind::Tls, format!("{host}: {e}")))?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls.client_config())
            .connect(name, tcp)
            .await
            .map_err(ConnectError::io)?;
        progress.reached(UPGRADE_PENDING);
        MaybeTlsStream::Rustls(tls_stream)
    } else {
        MaybeTlsStream::Plain(tcp)
    };

    let key = generate_key();
    let mut target = u.path().to_string();
    if let Some(q) = u.query() {
        target.push('?');
        target.push_str(q);
    }
    let host_header = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    if !extras.subprotocols.is_empty() {
        request.push_str("Sec-WebSocket-Protocol: ");
        request.push_str(&extras.subprotocols.join(", "));
        request.push_str("\r\n");
    }
    for (name, value) in &extras.headers {
        // A value is rendered from the scenario and the user's credentials: a line break
        // would end the header and start another.
        if value.contains(['\r', '\n']) {
            return Err(failed(format!(
                "the `{name}` header of the WebSocket upgrade holds a line break; check the template and the values it takes"
            )));
        }
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ConnectError::io)?;

    let tail = read_answer_head(&mut stream, &key, &extras.subprotocols, progress).await?;
    Ok(WsStream::from_partially_read(
        stream,
        tail,
        Role::Client,
        Some(small_buffers(
            extras.max_frame.unwrap_or(crate::protocol::MAX_FRAME),
        )),
    ))
}

/// Reads the answer to the upgrade up to the end of its headers and checks that it is one;
/// returns a copy (exactly sized) of the bytes that followed the head.
async fn read_answer_head(
    stream: &mut MaybeTlsStream<StampedTcp>,
    key: &str,
    offered: &[String],
    progress: &Progress,
) -> Result<Vec<u8>, ConnectError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(ConnectError::io)?;
        if n == 0 {
            return Err(ConnectError::new(
                ErrorKind::ConnectionReset,
                if buf.is_empty() {
                    "the server closed the connection without answering the WebSocket upgrade"
                        .to_string()
                } else {
                    "the server closed the connection in the middle of its answer to the WebSocket upgrade".to_string()
                },
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        progress.reached(ANSWER_STARTED);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut headers);
        match answer.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                check_upgrade(&answer, key, offered)?;
                return Ok(buf[head_len..].to_vec());
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_ANSWER_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ConnectError::new(
                    ErrorKind::Protocol,
                    format!(
                        "the answer to the WebSocket upgrade has no end of headers within {MAX_ANSWER_HEAD} bytes"
                    ),
                ));
            }
            Err(e) => {
                return Err(ConnectError::new(
                    ErrorKind::ConnectFailed,
                    format!(
                        "HTTP format error: the answer to the WebSocket upgrade is not HTTP ({e})"
                    ),
                ));
            }
        }
    }
}

fn header<'a>(answer: &'a httparse::Response<'_, '_>, name: &str) -> Option<&'a [u8]> {
    answer
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn check_upgrade(
    answer: &httparse::Response<'_, '_>,
    key: &str,
    offered: &[String],
) -> Result<(), ConnectError> {
    let code = answer.code.unwrap_or(0);
    if code != 101 {
        let reason = answer.reason.unwrap_or("");
        return Err(ConnectError::new(
            ErrorKind::for_status(code),
            format!("HTTP error: {code} {reason}")
                .trim_end()
                .to_string(),
        ));
    }
    let protocol_error = |why: &str| {
        ConnectError::new(
            ErrorKind::Protocol,
            format!("WebSocket protocol error: {why}"),
        )
    };
    if !header(answer, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(protocol_error(
            "the 101 answer does not upgrade to `websocket`",
        ));
    }
    let expected = derive_accept_key(key.as_bytes());
    if header(answer, "sec-websocket-accept") != Some(expected.as_bytes()) {
        return Err(protocol_error(
            "the 101 answer's Sec-WebSocket-Accept does not match the key sent",
        ));
    }
    let chosen = header(answer, "sec-websocket-protocol").map(String::from_utf8_lossy);
    match (chosen, offered.is_empty()) {
        (None, true) => {}
        (None, false) => {
            return Err(protocol_error(&format!(
                "the server upgraded without choosing a subprotocol of the ones offered ({})",
                offered.join(", ")
            )));
        }
        (Some(c), _) if offered.iter().any(|o| o.as_str() == c.trim()) => {}
        (Some(c), _) => {
            return Err(protocol_error(&format!(
                "the server chose subprotocol `{}`, which was not offered",
                crate::secrets::excerpt(c.trim(), 60)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_and_check(text: &str, key: &str) -> Result<(), ConnectError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut headers);
        assert!(answer.parse(text.as_bytes()).unwrap().is_complete());
        check_upgrade(&answer, key, &[])
    }

    #[test]
    fn an_upgrade_is_checked_against_the_key() {
        // The example of RFC 6455 section 1.3.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(parse_and_check(ok, key).is_ok());
        let wrong = ok.replace("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "AAAA");
        let e = parse_and_check(&wrong, key).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Protocol);
    }

    #[test]
    fn a_subprotocol_must_be_one_offered() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let check = |extra: &str, offered: &[&str]| {
            let text = format!("{ok}{extra}\r\n");
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut answer = httparse::Response::new(&mut headers);
            assert!(answer.parse(text.as_bytes()).unwrap().is_complete());
            let offered: Vec<String> = offered.iter().map(|s| s.to_string()).collect();
            check_upgrade(&answer, key, &offered).map_err(|e| e.detail)
        };
        assert!(check("Sec-WebSocket-Protocol: xmpp\r\n", &["xmpp"]).is_ok());
        assert!(check("", &[]).is_ok());
        assert!(
            check("", &["xmpp"])
                .unwrap_err()
                .contains("without choosing")
        );
        assert!(
            check("Sec-WebSocket-Protocol: mqtt\r\n", &["xmpp"])
                .unwrap_err()
                .contains("not offered")
        );
        assert!(
            check("Sec-WebSocket-Protocol: xmpp\r\n", &[])
                .unwrap_err()
                .contains("not offered")
        );
    }

    #[test]
    fn an_answer_that_is_not_an_upgrade_says_its_status() {
        let e = parse_and_check(
            "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n",
            "k",
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Http5xx);
        assert_eq!(e.detail, "HTTP error: 501 Not Implemented");
    }

    /// Opens `url` with a timeout of 300 ms and returns the error it ended with.
    async fn open_briefly(url: &str) -> ConnectError {
        let tls = TlsContext::new(None).expect("tls");
        let progress = Progress::default();
        let limit = std::time::Duration::from_millis(300);
        match tokio::time::timeout(limit, open(url, &tls, None, &progress)).await {
            Ok(Ok(_)) => panic!("{url} opened"),
            Ok(Err(e)) => e,
            Err(_) => progress.timed_out(limit),
        }
    }

    #[tokio::test]
    async fn a_timeout_says_how_far_the_opening_got() {
        // A listener that never accepts: the kernel completes the TCP handshake for what its
        // queue holds, and nobody answers the upgrade.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("ws://{addr}/v1/ws");
        let e = open_briefly(&url).await;
        assert_eq!(e.kind, ErrorKind::ConnectTimeout);
        assert_eq!(
            e.detail,
            "the TCP connection was accepted, but the WebSocket upgrade was not answered within 300ms"
        );
        // With the queue full the kernel drops the connection request itself: nothing
        // answered at all.
        let mut held = Vec::new();
        for _ in 0..4 {
            let e = open_briefly(&url).await;
            held.push(e.detail);
        }
        assert_eq!(
            held.last().map(String::as_str),
            Some("no TCP connection within 300ms: the connection request was not answered"),
            "{held:?}"
        );
        drop(listener);
    }
}

//! One keep-alive HTTP/1.1 connection carrying one request at a time: the lean send path of
//! a closed loop, where each user waits for its answer before it asks again. Requests are
//! written from a reused buffer, answers parsed in place with `httparse` (Content-Length,
//! chunked, or until close); no task, channel or lock per request, which is what keeps
//! chatload's own cost per request small next to wrk's. Owns the bytes on the wire,
//! keep-alive and reconnecting; not the templates (see `http`) nor what an answer means to
//! a virtual user.

use super::tls::TlsContext;
use super::{ConnectError, Incoming};
use crate::metrics::ErrorKind;
use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Headers an answer may carry; more is a protocol error.
const MAX_HEADERS: usize = 64;

/// Where the connection goes, parsed once per run.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL's host (IPv6 in brackets, as URLs write it) and port.
    pub host: String,
    pub port: u16,
    /// `host:port` to connect to.
    pub addr: String,
    /// The `Host` header's value.
    pub host_header: String,
    /// The path the target URL starts with ("" for none), joined before relative paths.
    pub base_path: String,
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl Endpoint {
    /// `http://host[:port][/path]` or `https://…`.
    pub fn parse(url: &str, tls: &TlsContext) -> Option<Endpoint> {
        let u = reqwest::Url::parse(url).ok()?;
        let secure = match u.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = u.host_str()?.to_string();
        let port = u.port_or_known_default()?;
        let host_header = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if secure {
            let name = rustls::pki_types::ServerName::try_from(bare.clone()).ok()?;
            Some((tls.client_config(), name))
        } else {
            None
        };
        let addr = if bare.contains(':') {
            format!("[{bare}]:{port}")
        } else {
            format!("{bare}:{port}")
        };
        Some(Endpoint {
            host,
            port,
            addr,
            host_header,
            base_path: u.path().trim_end_matches('/').to_string(),
            tls,
        })
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s) => s.write(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(s) => s.flush().await,
        }
    }
}

async fn open(
    endpoint: &Endpoint,
    timeout: Duration,
    source: Option<IpAddr>,
) -> Result<Stream, ConnectError> {
    let fail = |e: io::Error| ConnectError::new(super::connector::classify_io(&e), e.to_string());
    let tcp = tokio::time::timeout(timeout, super::source::connect(&endpoint.addr, source))
        .await
        .map_err(|_| {
            ConnectError::new(
                ErrorKind::ConnectTimeout,
                format!("no answer from {} within {timeout:?}", endpoint.addr),
            )
        })?
        .map_err(fail)?;
    match &endpoint.tls {
        None => Ok(Stream::Plain(tcp)),
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = tokio::time::timeout(timeout, connector.connect(name.clone(), tcp))
                .await
                .map_err(|_| {
                    ConnectError::new(ErrorKind::ConnectTimeout, "TLS handshake timed out")
                })?
                .map_err(|e| ConnectError::new(ErrorKind::Tls, e.to_string()))?;
            Ok(Stream::Tls(Box::new(tls)))
        }
    }
}

/// The answer to one request, as far as a sender cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The body, kept only when asked for (message id) or for a refusal's detail.
    pub body: Vec<u8>,
}

/// How far one response has been parsed.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// Need more bytes.
    Partial,
    /// A whole answer of `used` bytes; `close` when the server ends the connection after it.
    Done {
        answer: Answer,
        used: usize,
        close: bool,
    },
    /// The body runs until the server closes (no length given).
    UntilClose { status: u16, head: usize },
    /// Not an answer this client can read (`Protocol`), or one longer than `max_answer`
    /// allows (`AnswerTooLong`): the connection cannot be used again either way.
    Bad(ErrorKind, String),
}

fn header_is(h: &httparse::Header<'_>, name: &str, value: &str) -> bool {
    h.name.eq_ignore_ascii_case(name)
        && std::str::from_utf8(h.value)
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(value)))
}

/// Parses one response at the front of `buf`. `keep_body` keeps a 2xx body; error bodies are
/// always kept (their text explains the refusal). A body longer than `max_answer` is refused,
/// so that no answer can make a connection hold more than that.
fn parse(buf: &[u8], keep_body: bool, head_request: bool, max_answer: usize) -> Parsed {
    let mut skip = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[skip..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(e) => {
                return Parsed::Bad(ErrorKind::Protocol, format!("not an HTTP/1.1 answer ({e})"));
            }
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // 100 Continue and other interim answers precede the real one.
            skip += head;
            continue;
        }
        let keep = keep_body || !(200..300).contains(&status);
        let close = resp
            .headers
            .iter()
            .any(|h| header_is(h, "connection", "close"))
            || resp.version == Some(0);
        let start = skip + head;
        if head_request || status == 204 || status == 304 {
            return Parsed::Done {
                answer: Answer {
                    status,
                    body: Vec::new(),
                },
                used: start,
                close,
            };
        }
        if resp
            .headers
            .iter()
            .any(|h| header_is(h, "transfer-encoding", "chunked"))
        {
            return match dechunk(&buf[start..], keep, max_answer) {
                Ok(Some((body, n))) => Parsed::Done {
                    answer: Answer { status, body },
                    used: start + n,
                    close,
                },
                Ok(None) => Parsed::Partial,
                Err((kind, why)) => Parsed::Bad(kind, why),
            };
        }
        let length = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
        return match length {
            Some(Some(n)) if n > max_answer => Parsed::Bad(
                ErrorKind::AnswerTooLong,
                format!(
                    "an answer of {n} bytes, more than max_answer ({max_answer} bytes) allows; the {} bytes past it were not read",
                    n - max_answer
                ),
            ),
            Some(Some(n)) if buf.len() >= start + n => Parsed::Done {
                answer: Answer {
                    status,
                    body: if keep {
                        buf[start..start + n].to_vec()
                    } else {
                        Vec::new()
                    },
                },
                used: start + n,
                close,
            },
            Some(Some(_)) => Parsed::Partial,
            Some(None) => Parsed::Bad(ErrorKind::Protocol, "an unreadable Content-Length".into()),
            None => Parsed::UntilClose {
                status,
                head: start,
            },
        };
    }
}

/// A chunked body (kept or not) and the bytes it used.
type Dechunked = (Vec<u8>, usize);

/// A chunked body at the front of `buf`: the body (when kept) and the bytes it used, or
/// `None` when more bytes are needed.
fn dechunk(
    buf: &[u8],
    keep: bool,
    max_answer: usize,
) -> Result<Option<Dechunked>, (ErrorKind, String)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (n, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err((ErrorKind::Protocol, "a malformed chunked body".into())),
        };
        let too_long = || {
            (
                ErrorKind::AnswerTooLong,
                format!(
                    "a chunked answer of more than max_answer ({max_answer} bytes); the rest was not read"
                ),
            )
        };
        let size = usize::try_from(size).map_err(|_| too_long())?;
        if size > max_answer || at + size > max_answer + 64 * 1024 {
            return Err(too_long());
        }
        at += n;
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(find_blank_line(&buf[at..]).map(|end| (body, at + end)));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if keep {
            body.extend_from_slice(&buf[at..at + size]);
        }
        at += size + 2;
    }
}

/// Bytes up to and including the line that ends a trailer section ("\r\n" alone first).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// A request waiting its turn: its id and its bytes.
type Queued = (u64, Vec<u8>);

pub struct Http1Conn {
    endpoint: Arc<Endpoint>,
    stream: Option<Stream>,
    /// Requests answered on the current connection (a reused one may have been closed by
    /// the server while idle: such a request is written once more on a fresh connection).
    served: u64,
    queue: VecDeque<Queued>,
    /// The request on the wire: its id, bytes, how much is written, and its deadline.
    current: Option<(u64, Vec<u8>, usize, Instant)>,
    retried: bool,
    inbuf: Vec<u8>,
    filled: usize,
    keep_body: bool,
    head_request: bool,
    /// The largest answer read (`[target.http] max_answer`).
    max_answer: usize,
    timeout: Duration,
    /// Spare request buffers, so a steady loop allocates none.
    spare: Vec<Vec<u8>>,
    /// Requests refused before they reached the wire.
    refused: VecDeque<(u64, ErrorKind, String)>,
    source: Option<IpAddr>,
}

impl Http1Conn {
    /// Opens the connection now, so that the connect is measured and a refusing target is
    /// seen before the first request.
    pub async fn connect(
        endpoint: Arc<Endpoint>,
        timeout: Duration,
        request_timeout: Duration,
        keep_body: bool,
        head_request: bool,
        max_answer: usize,
        source: Option<IpAddr>,
    ) -> Result<Http1Conn, ConnectError> {
        let stream = open(&endpoint, timeout, source).await?;
        Ok(Http1Conn {
            endpoint,
            stream: Some(stream),
            served: 0,
            queue: VecDeque::new(),
            current: None,
            retried: false,
            inbuf: vec![0; 16 << 10],
            filled: 0,
            keep_body,
            head_request,
            max_answer,
            timeout: request_timeout,
            spare: Vec::new(),
            refused: VecDeque::new(),
            source,
        })
    }

    /// Answers a request that could not be written with this refusal, in its turn.
    pub fn refuse(&mut self, id: u64, kind: ErrorKind, detail: String) {
        self.refused.push_back((id, kind, detail));
    }

    /// A cleared buffer to write the next request into.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }

    /// Queues a request (whole bytes: head and body).
    pub fn push(&mut self, id: u64, bytes: Vec<u8>) {
        self.queue.push_back((id, bytes));
    }

    /// The next answer: (id, answer) or the request's failure. Cancel-safe: the request in
    /// progress, what was written of it and what was read stay in `self`.
    pub async fn next(&mut self) -> (u64, Result<Answer, (ErrorKind, String)>) {
        if let Some((id, kind, detail)) = self.refused.pop_front() {
            return (id, Err((kind, detail)));
        }
        if self.current.is_none() {
            let Some((id, bytes)) = self.queue.pop_front() else {
                return std::future::pending().await;
            };
            self.current = Some((id, bytes, 0, Instant::now() + self.timeout));
            self.retried = false;
        }
        let (id, deadline) = match &self.current {
            Some((id, _, _, d)) => (*id, *d),
            None => return std::future::pending().await,
        };
        let outcome = match tokio::time::timeout_at(deadline, self.exchange()).await {
            Ok(r) => r,
            Err(_) => {
                // The answer may still come: this connection cannot be trusted to pair the
                // next answer with the next request.
                self.drop_connection();
                Err((
                    ErrorKind::RequestTimeout,
                    format!("no answer within {:?}", self.timeout),
                ))
            }
        };
        if let Some((_, bytes, _, _)) = self.current.take() {
            self.spare.push(bytes);
        }
        (id, outcome)
    }

    fn drop_connection(&mut self) {
        self.stream = None;
        self.served = 0;
        self.filled = 0;
    }

    /// Writes the current request (once more on a fresh connection if a reused one turns out
    /// closed before any answer) and reads its answer.
    async fn exchange(&mut self) -> Result<Answer, (ErrorKind, String)> {
        loop {
            match self.try_exchange().await {
                Err((_, _, true)) if !self.retried => {
                    self.retried = true;
                    self.drop_connection();
                    if let Some(c) = self.current.as_mut() {
                        c.2 = 0;
                    }
                }
                Err((kind, detail, _)) => {
                    self.drop_connection();
                    return Err((kind, detail));
                }
                Ok(a) => return Ok(a),
            }
        }
    }

    /// The error's third field says whether writing the request again is safe: the
    /// connection had served before and closed without a byte of this answer.
    async fn try_exchange(&mut self) -> Result<Answer, (ErrorKind, String, bool)> {
        if self.stream.is_none() {
            let s = open(&self.endpoint, self.timeout, self.source)
                .await
                .map_err(|e| (e.kind, e.detail, false))?;
            self.stream = Some(s);
            self.served = 0;
            self.filled = 0;
        }
        let reused = self.served > 0;
        let io_err = |e: io::Error, nothing_yet: bool| {
            (
                super::connector::classify_io(&e),
                e.to_string(),
                reused && nothing_yet,
            )
        };
        let (Some(stream), Some((_, bytes, written, _))) =
            (self.stream.as_mut(), self.current.as_mut())
        else {
            return Err((ErrorKind::Protocol, "no request to send".into(), false));
        };
        while *written < bytes.len() {
            match stream.write(&bytes[*written..]).await {
                Ok(0) => {
                    return Err((
                        ErrorKind::ConnectionReset,
                        "the connection closed while the request was written".into(),
                        reused,
                    ));
                }
                Ok(n) => *written += n,
                Err(e) => return Err(io_err(e, true)),
            }
        }
        stream.flush().await.map_err(|e| io_err(e, true))?;
        loop {
            match parse(
                &self.inbuf[..self.filled],
                self.keep_body,
                self.head_request,
                self.max_answer,
            ) {
                Parsed::Done {
                    answer,
                    used,
                    close,
                } => {
                    self.inbuf.copy_within(used..self.filled, 0);
                    self.filled -= used;
                    self.served += 1;
                    if close {
                        self.drop_connection();
                    }
                    return Ok(answer);
                }
                Parsed::Bad(kind, why) => return Err((kind, why, false)),
                Parsed::Partial | Parsed::UntilClose { .. } => {}
            }
            if self.filled == self.inbuf.len() {
                // Head and body together may not grow past max_answer (and the head's room).
                if self.inbuf.len() >= self.max_answer + 64 * 1024 {
                    return Err((
                        ErrorKind::AnswerTooLong,
                        format!(
                            "an answer of more than max_answer ({} bytes); the rest was not read",
                            self.max_answer
                        ),
                        false,
                    ));
                }
                self.inbuf.resize(self.inbuf.len() * 2, 0);
            }
            let nothing_yet = self.filled == 0;
            let n = stream
                .read(&mut self.inbuf[self.filled..])
                .await
                .map_err(|e| io_err(e, nothing_yet))?;
            if n == 0 {
                if let Parsed::UntilClose { status, head } = parse(
                    &self.inbuf[..self.filled],
                    self.keep_body,
                    self.head_request,
                    self.max_answer,
                ) {
                    let body = self.inbuf[head..self.filled].to_vec();
                    self.drop_connection();
                    return Ok(Answer { status, body });
                }
                return Err((
                    ErrorKind::ConnectionReset,
                    "the server closed the connection before answering".into(),
                    reused && nothing_yet,
                ));
            }
            self.filled += n;
        }
    }
}

/// Writes a request head and body into `out`.
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    endpoint: &Endpoint,
    header_lines: &str,
    body: Option<&[u8]>,
) {
    use std::io::Write;
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(endpoint.host_header.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(header_lines.as_bytes());
    if let Some(b) = body {
        let _ = write!(
            out,
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            b.len()
        );
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

/// What an answer means for the message it confirms.
pub fn judge(
    id: u64,
    outcome: Result<Answer, (ErrorKind, String)>,
    id_pointer: Option<&str>,
) -> Incoming {
    let answer = match outcome {
        Ok(a) => a,
        Err((kind, detail)) => {
            return Incoming::Rejected {
                id,
                kind,
                detail: crate::secrets::redact(&detail),
            };
        }
    };
    if !(200..300).contains(&answer.status) {
        let text = String::from_utf8_lossy(&answer.body);
        return Incoming::Rejected {
            id,
            kind: ErrorKind::for_status(answer.status),
            detail: format!(
                "HTTP {}: {}",
                answer.status,
                crate::secrets::excerpt(&text, 160)
            ),
        };
    }
    if let Some(p) = id_pointer {
        let found = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .is_some_and(|v| v.pointer(p).is_some());
        if !found {
            return Incoming::Rejected {
                id,
                kind: ErrorKind::Protocol,
                detail: format!("a 2xx answer without a message id at {p}"),
            };
        }
    }
    Incoming::Accepted { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_longer_than_max_answer_is_refused_before_it_is_read() {
        // A gigabyte promised: refused from the head alone, nothing buffered for it.
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\nxx";
        assert!(
            matches!(parse(r, false, false, 65536), Parsed::Bad(ErrorKind::AnswerTooLong, why) if why.contains("max_answer"))
        );
        // Chunked: each chunk and the whole body are held to it as well.
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n";
        assert!(matches!(
            parse(big, true, false, 65536),
            Parsed::Bad(ErrorKind::AnswerTooLong, _)
        ));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(done(parse(r, true, false, 256)).1, b"hello");
    }

    fn done(p: Parsed) -> (u16, Vec<u8>, usize, bool) {
        match p {
            Parsed::Done {
                answer,
                used,
                close,
            } => (answer.status, answer.body, used, close),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn content_length_bodies_are_framed_exactly() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204";
        let (status, body, used, close) = done(parse(r, true, false, 1 << 20));
        assert_eq!(
            (status, body.as_slice(), used, close),
            (200, &b"hello"[..], 43, false)
        );
        // Without asking for it, a 2xx body is skipped, not copied.
        assert!(done(parse(r, false, false, 1 << 20)).1.is_empty());
        assert_eq!(parse(&r[..40], true, false, 1 << 20), Parsed::Partial);
    }

    #[test]
    fn chunked_bodies_and_interim_answers() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (status, body, used, _) = done(parse(r, true, false, 1 << 20));
        assert_eq!(
            (status, body.as_slice(), used),
            (201, &b"abcde"[..], r.len())
        );
        assert_eq!(
            parse(&r[..r.len() - 1], true, false, 1 << 20),
            Parsed::Partial
        );
    }

    #[test]
    fn error_bodies_are_kept_and_close_is_seen() {
        let r = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy";
        let (status, body, _, close) = done(parse(r, false, false, 1 << 20));
        assert_eq!((status, body.as_slice(), close), (503, &b"busy"[..], true));
        assert!(matches!(
            parse(b"garbage\r\n\r\n", false, false, 1 << 20),
            Parsed::Bad(..)
        ));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\nrest", false, false, 1 << 20),
            Parsed::UntilClose {
                status: 200,
                head: 19
            }
        );
    }

    #[test]
    fn answers_become_confirmations_or_refusals() {
        let ok = Answer {
            status: 200,
            body: br#"{"id":"m.1"}"#.to_vec(),
        };
        assert_eq!(
            judge(7, Ok(ok.clone()), Some("/id")),
            Incoming::Accepted { id: 7 }
        );
        assert!(matches!(
            judge(7, Ok(ok), Some("/missing")),
            Incoming::Rejected {
                kind: ErrorKind::Protocol,
                ..
            }
        ));
        let refused = Answer {
            status: 429,
            body: b"slow down".to_vec(),
        };
        assert!(matches!(
            judge(7, Ok(refused), None),
            Incoming::Rejected {
                kind: ErrorKind::Http4xx,
                ..
            }
        ));
    }

    #[test]
    fn endpoints_keep_host_port_and_base_path() {
        let tls = TlsContext::new(None).unwrap();
        let e = Endpoint::parse("http://127.0.0.1:8080/api/", &tls).unwrap();
        assert_eq!(
            (
                e.addr.as_str(),
                e.host_header.as_str(),
                e.base_path.as_str()
            ),
            ("127.0.0.1:8080", "127.0.0.1:8080", "/api")
        );
        let s = Endpoint::parse("https://example.test", &tls).unwrap();
        assert_eq!(
            (s.addr.as_str(), s.tls.is_some()),
            ("example.test:443", true)
        );
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/m", &e, "X-A: 1\r\n", Some(b"{}"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /m HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-A: 1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}

//! One keep-alive HTTP/1.1 connection carrying one request at a time: the lean send path of
//! a closed loop, where each user waits for its answer before it asks again, and of an open
//! model's shared connections (`http1_pool`). Requests are
//! written from a reused buffer, answers parsed in place with `httparse` (Content-Length,
//! chunked, or until close); no task, channel or lock per request, which is what keeps
//! chatload's own cost per request small next to wrk's. Owns the bytes on the wire,
//! keep-alive and reconnecting; not the templates (see `http`) nor what an answer means to
//! a virtual user.

use super::ConnectError;
use super::authority::Authority;
use super::byte_stream::ByteStream;
use super::http1_answer::{Answer, Parsed, parse};
use super::stamped_tcp::{StampedTcp, waited_since};
use super::tls::TlsContext;
use crate::metrics::ErrorKind;
use std::collections::VecDeque;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

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
        let at = Authority::of(url)?;
        let port = at.port;
        let host_header = match u.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let tls = if secure {
            let name = rustls::pki_types::ServerName::try_from(at.host.clone()).ok()?;
            Some((tls.client_config(), name))
        } else {
            None
        };
        let addr = at.address();
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

async fn open(
    endpoint: &Endpoint,
    timeout: Duration,
    source: Option<IpAddr>,
) -> Result<ByteStream, ConnectError> {
    let tcp = tokio::time::timeout(timeout, super::source::connect(&endpoint.addr, source))
        .await
        .map_err(|_| {
            ConnectError::new(
                ErrorKind::ConnectTimeout,
                format!("no answer from {} within {timeout:?}", endpoint.addr),
            )
        })?
        .map_err(ConnectError::io)?;
    // Stamped, so that an answer's latency ends when it arrived, not when this client got
    // round to reading it (the wait is `read_lag`).
    let tcp = StampedTcp::new(tcp).map_err(ConnectError::io)?;
    match &endpoint.tls {
        None => Ok(ByteStream::Plain(tcp)),
        Some((config, name)) => tokio::time::timeout(
            timeout,
            ByteStream::tls_named(tcp, config.clone(), name.clone()),
        )
        .await
        .map_err(|_| ConnectError::new(ErrorKind::ConnectTimeout, "TLS handshake timed out"))?,
    }
}

/// The read buffer a connection starts with; a longer answer grows it (up to `max_answer`).
const READ_BUFFER: usize = 16 << 10;

/// Request buffers kept for reuse. A closed loop takes one back for each request; a pooled
/// connection is handed requests rendered elsewhere and takes none, so without a bound its
/// spares would grow by one per request.
const MAX_SPARE: usize = 2;

/// A request waiting its turn: its id and its bytes.
type Queued = (u64, Vec<u8>);

pub struct Http1Conn {
    endpoint: Arc<Endpoint>,
    stream: Option<ByteStream>,
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
    /// When the last bytes of the answer `next` last returned arrived (ns since the epoch;
    /// 0: not known, or no answer).
    answer_arrived_ns: u64,
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
        let mut conn = Http1Conn::unopened(
            endpoint,
            request_timeout,
            keep_body,
            head_request,
            max_answer,
            source,
        );
        conn.stream = Some(stream);
        Ok(conn)
    }

    /// A connection that opens with its first request, inside that request's time: what a
    /// shared pool does when no idle connection is at hand (`http1_pool`).
    pub fn unopened(
        endpoint: Arc<Endpoint>,
        request_timeout: Duration,
        keep_body: bool,
        head_request: bool,
        max_answer: usize,
        source: Option<IpAddr>,
    ) -> Http1Conn {
        Http1Conn {
            endpoint,
            stream: None,
            served: 0,
            queue: VecDeque::new(),
            current: None,
            retried: false,
            inbuf: vec![0; READ_BUFFER],
            filled: 0,
            keep_body,
            head_request,
            max_answer,
            timeout: request_timeout,
            spare: Vec::new(),
            refused: VecDeque::new(),
            source,
            answer_arrived_ns: 0,
        }
    }

    /// Request buffers kept for reuse.
    #[cfg(test)]
    pub fn spare_buffers(&self) -> usize {
        self.spare.len()
    }

    #[cfg(test)]
    pub fn read_buffer(&self) -> usize {
        self.inbuf.len()
    }

    /// How long the next request may take, connecting included.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Gives back what a long answer grew the read buffer to, for a connection that waits
    /// idle in a pool: idle connections then hold their first 16 KiB each, not the longest
    /// answer each ever read.
    pub fn shrink(&mut self) {
        if self.inbuf.len() > READ_BUFFER && self.filled <= READ_BUFFER {
            self.inbuf.truncate(READ_BUFFER);
            self.inbuf.shrink_to_fit();
        }
    }

    /// Open, with nothing queued or on the wire: fit to carry another request.
    pub fn idle(&self) -> bool {
        self.stream.is_some()
            && self.current.is_none()
            && self.queue.is_empty()
            && self.refused.is_empty()
    }

    /// When the last bytes of the answer `next` last returned arrived (ns since the epoch;
    /// 0: not known), to keep past the connection; read it with [`waited_since`].
    pub fn answer_arrived_ns(&self) -> u64 {
        self.answer_arrived_ns
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
        self.answer_arrived_ns = 0;
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
        if let Some((_, bytes, _, _)) = self.current.take()
            && self.spare.len() < MAX_SPARE
        {
            self.spare.push(bytes);
        }
        (id, outcome)
    }

    /// How long the answer `next` last returned had waited on this machine since its last
    /// bytes arrived; `None` for a refusal, a timeout, or without a stamp.
    pub fn waited(&self) -> Option<Duration> {
        waited_since(self.answer_arrived_ns)
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
        // Only a stamp this answer's own reads brought is its arrival: a read without one
        // leaves the previous answer's in place, which would shorten this latency.
        let stamp_before = stream.arrived_ns();
        let own_stamp = |s: &ByteStream| Some(s.arrived_ns()).filter(|a| *a != stamp_before);
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
                    // One request at a time: the read that completed this answer was its last.
                    self.answer_arrived_ns = own_stamp(stream).unwrap_or(0);
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
                    self.answer_arrived_ns = own_stamp(stream).unwrap_or(0);
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

#[cfg(test)]
mod tests {
    use super::*;

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

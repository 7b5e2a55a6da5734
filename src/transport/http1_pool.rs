//! The open model's shared keep-alive connections to an HTTP API: a request takes an idle
//! connection (or opens one within its own time), carries its exchange on the lean
//! one-request path of `http1`, and gives the connection back. Answers read there carry the
//! kernel's arrival stamps, so an open model's latencies end when the answer arrived, as a
//! closed loop's do, not when a busy client got round to reading it. Owns the idle set and
//! one pooled exchange; not the bytes on the wire (`http1`) nor the requests for other hosts,
//! which stay on reqwest (`http_reqwest`).

use super::Incoming;
use super::http1::{Endpoint, Http1Conn};
use super::http1_answer::{Answer, judge};
use crate::metrics::ErrorKind;
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle connections kept: past it a connection given back is closed. A pooled connection
/// holds a 16 KiB read buffer, so the idle set stays under 4.5 MiB however many are opened.
/// Requests in flight are bounded elsewhere (each user's `MAX_OPEN`).
pub const MAX_IDLE: usize = 256;

/// The settings every pooled connection is opened with.
pub struct Http1Pool {
    endpoint: Arc<Endpoint>,
    request_timeout: Duration,
    /// Where a 2xx answer names the message's id (`[target.http] id`); its body is kept
    /// only then.
    id_pointer: Option<String>,
    head_request: bool,
    max_answer: usize,
    /// A queue without a lock: users on every thread take and give back here, each
    /// connection with when it was given back.
    idle: ArrayQueue<(Instant, Http1Conn)>,
}

impl Http1Pool {
    pub fn new(
        endpoint: Arc<Endpoint>,
        request_timeout: Duration,
        id_pointer: Option<String>,
        head_request: bool,
        max_answer: usize,
    ) -> Http1Pool {
        Http1Pool {
            endpoint,
            request_timeout,
            id_pointer,
            head_request,
            max_answer,
            idle: ArrayQueue::new(MAX_IDLE),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Idle connections now.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// An idle connection the server is not about to close: one idle longer than
    /// [`POOL_IDLE`](super::tls::POOL_IDLE) is closed here instead, as reqwest's pool does.
    fn take_idle(&self) -> Option<Http1Conn> {
        while let Some((since, conn)) = self.idle.pop() {
            if since.elapsed() < super::tls::POOL_IDLE {
                return Some(conn);
            }
        }
        None
    }

    /// One request (`bytes`, head and body) on a pooled connection: what its answer means
    /// for message `id`, and when that answer's last bytes arrived (ns since the epoch; 0:
    /// not known). The connection goes back to the pool if it can carry another request.
    pub async fn exchange(self: Arc<Self>, id: u64, bytes: Vec<u8>) -> (Incoming, u64) {
        let timeout = self.request_timeout;
        let (outcome, arrived_ns) = self.clone().request(bytes, timeout).await;
        (judge(id, outcome, self.id_pointer.as_deref()), arrived_ns)
    }

    /// One request on a pooled connection within `timeout` (connecting included): its
    /// answer or why none came, and when the answer's last bytes arrived (ns since the
    /// epoch; 0: not known). For a caller that reads the answer itself (the business API
    /// client).
    pub async fn request(
        self: Arc<Self>,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> (Result<Answer, (ErrorKind, String)>, u64) {
        let mut conn = self.take_idle().unwrap_or_else(|| {
            Http1Conn::unopened(
                self.endpoint.clone(),
                self.request_timeout,
                self.id_pointer.is_some(),
                self.head_request,
                self.max_answer,
                None,
            )
        });
        conn.set_timeout(timeout);
        conn.push(0, bytes);
        let (_, outcome) = conn.next().await;
        let arrived_ns = conn.answer_arrived_ns();
        if conn.idle() {
            conn.shrink();
            // A full pool closes it: more were open at the peak than stay useful after.
            let _ = self.idle.push((Instant::now(), conn));
        }
        (outcome, arrived_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::tls::TlsContext;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers every request on a connection `200` with `{"id":1}`, counting
    /// the connections it accepted.
    async fn api() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            let big = seen.starts_with(b"GET /big ");
                            seen.drain(..end + 4);
                            let answer = if big {
                                let body =
                                    format!("{{\"id\":1,\"pad\":\"{}\"}}", "x".repeat(40_000));
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                    body.len()
                                );
                                (head + &body).into_bytes()
                            } else {
                                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":1}".to_vec()
                            };
                            if s.write_all(&answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn get(pool: &Http1Pool) -> Vec<u8> {
        get_path(pool, "/m")
    }

    fn get_path(pool: &Http1Pool, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::http1::write_request(&mut out, "GET", path, pool.endpoint(), "", None);
        out
    }

    #[tokio::test]
    async fn connections_are_reused_and_answers_carry_their_arrival() {
        let _stamping = crate::transport::stamped_tcp::stamping_switched_on().await;
        let (url, accepted) = api().await;
        let tls = TlsContext::new(None).unwrap();
        let endpoint = Arc::new(Endpoint::parse(&url, &tls).unwrap());
        let pool = Arc::new(Http1Pool::new(
            endpoint,
            Duration::from_secs(5),
            Some("/id".into()),
            false,
            1024,
        ));
        // Three at once open three connections; the next three reuse them.
        for round in 0..2u64 {
            let answers = futures_util::future::join_all((0..3).map(|i| {
                let bytes = get(&pool);
                pool.clone().exchange(round * 3 + i, bytes)
            }))
            .await;
            for (i, (incoming, arrived_ns)) in answers.into_iter().enumerate() {
                assert_eq!(
                    incoming,
                    Incoming::Accepted {
                        id: round * 3 + i as u64
                    }
                );
                assert!(arrived_ns > 0, "an answer without its arrival stamp");
            }
            assert_eq!(pool.idle_count(), 3);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Requests rendered elsewhere leave their buffers with the connection: it keeps
        // two, not one per request it carried.
        for id in 0..50 {
            let bytes = get(&pool);
            pool.clone().exchange(id, bytes).await;
        }
        let (_, conn) = pool.idle.pop().unwrap();
        assert!(conn.spare_buffers() <= 2, "{}", conn.spare_buffers());
    }

    #[tokio::test]
    async fn an_idle_connection_gives_back_what_a_long_answer_grew() {
        let (url, _) = api().await;
        let tls = TlsContext::new(None).unwrap();
        let pool = Arc::new(Http1Pool::new(
            Arc::new(Endpoint::parse(&url, &tls).unwrap()),
            Duration::from_secs(5),
            Some("/id".into()),
            false,
            64 << 10,
        ));
        let bytes = get_path(&pool, "/big");
        let (incoming, _) = pool.clone().exchange(1, bytes).await;
        assert_eq!(incoming, Incoming::Accepted { id: 1 });
        let (_, conn) = pool.idle.pop().expect("kept for the next request");
        assert_eq!(conn.read_buffer(), 16 << 10);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_refusal_and_not_kept() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let tls = TlsContext::new(None).unwrap();
        let pool = Arc::new(Http1Pool::new(
            Arc::new(Endpoint::parse(&url, &tls).unwrap()),
            Duration::from_secs(5),
            None,
            false,
            1024,
        ));
        let (incoming, arrived_ns) = pool.clone().exchange(9, get(&pool)).await;
        assert!(
            matches!(incoming, Incoming::Rejected { id: 9, .. }),
            "{incoming:?}"
        );
        assert_eq!((arrived_ns, pool.idle_count()), (0, 0));
    }
}

//! The embedded reference messaging server: consumers on WebSocket (JSON frames from
//! `protocol`) and businesses on a Cloud-API-shaped HTTP API, on one port. What `chatload
//! serve` runs and what `chatload run` starts in-process when no target is given. Owns
//! listening, accepting, telling the two protocols apart and shutting down; routing state is
//! in `hub`, the business API in `business`.
//!
//! A crate of its own so that the compiler holds the boundary: it depends on
//! `chatload-protocol` and on nothing of the client side (scenario, engine, report).

pub mod business;
mod connection;
mod delay_line;
pub mod hub;
pub mod knobs;
pub mod limits;
mod outbox;
pub mod stats;
mod upgrade;

pub use hub::ServerCounters;
pub use knobs::{ApiFaults, Knobs, Latency};
pub use limits::Limits;

// The protocol crate under its short name, as the modules here have always called it.
use chatload_protocol as protocol;
use chatload_protocol::wsio;
use hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running server. Dropping it does not stop it; call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}; choose a free address with --listen")]
pub struct BindError {
    pub addr: String,
    pub source: std::io::Error,
}

impl RunningServer {
    /// The WebSocket URL clients connect to.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// The base of the business HTTP API (`{base}/v1/{business}/messages`).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> ServerCounters {
        self.hub.snapshot()
    }

    /// Stops accepting and closes every connection (clients see the connection drop).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
        let _ = self.accept_task.await;
    }
}

/// What a new connection's first bytes ask for.
enum Asks {
    WebSocket,
    /// Anything else is the HTTP API (which reads, and times out, its own header).
    Http,
    /// Closed before saying anything, or said too little within the header timeout.
    Nothing {
        timed_out: bool,
    },
}

/// Whether a new connection asks for the WebSocket path. Peeks at the request line without
/// consuming it.
async fn first_request(
    stream: &tokio::net::TcpStream,
    header_timeout: std::time::Duration,
) -> Asks {
    const WS: &[u8] = b"GET /v1/ws";
    let mut buf = [0u8; 10];
    let deadline = tokio::time::Instant::now() + header_timeout;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return Asks::Nothing { timed_out: false },
            Err(_) => return Asks::Nothing { timed_out: true },
        };
        if n == 0 {
            return Asks::Nothing { timed_out: false };
        }
        if buf[..n] != WS[..n] {
            return Asks::Http;
        }
        if n == WS.len() {
            return Asks::WebSocket;
        }
        // A partial request line: wait for more bytes rather than spin on the same ones.
        let _ = stream.readable().await;
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
}

/// The most descriptors the server reserves its table for at start (512 KiB of kernel memory
/// for the table); past this many connections the table grows as they arrive.
const RESERVED_FDS_MAX: u64 = 65_536;

/// Binds `addr` (port 0 picks a free one) and serves until shut down, within the default
/// [`Limits`].
pub async fn start(addr: &str, knobs: Knobs) -> Result<RunningServer, BindError> {
    start_with_limits(addr, knobs, Limits::default()).await
}

/// [`start`] within `limits`.
pub async fn start_with_limits(
    addr: &str,
    knobs: Knobs,
    limits: Limits,
) -> Result<RunningServer, BindError> {
    let listener = chatload_protocol::listen::bind(addr)
        .await
        .map_err(|source| BindError {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })?;
    // Grown now, the descriptor table does not stall the accept loop as clients arrive.
    chatload_protocol::fd_table::reserve(
        (limits.max_connections as u64 + 64).min(RESERVED_FDS_MAX),
    );
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let emitter = business::webhook::EmitterConfig {
        reorder: knobs.api.webhook_reorder,
        seed: knobs.api.seed,
    };
    let hub = Arc::new(Hub::new(knobs, limits, events_tx));
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::spawn(business::webhook::run_emitter(
        hub.clone(),
        events_rx,
        emitter,
        Arc::new(business::webhook::WebhookStats::default()),
    ));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept_hub = hub.clone();
    let accept_task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    // At the limit, a new connection is closed at once (and counted) rather
                    // than let the descriptors run out.
                    let Ok(slot) = open.clone().try_acquire_owned() else {
                        accept_hub
                            .stats
                            .connections_refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    let (hub, shutdown) = (accept_hub.clone(), shutdown_rx.clone());
                    tokio::spawn(async move {
                        match first_request(&stream, limits.header_timeout).await {
                            Asks::WebSocket => {
                                connection::serve_connection(
                                    stream,
                                    hub,
                                    shutdown,
                                    limits.header_timeout,
                                )
                                .await
                            }
                            Asks::Http => {
                                business::http::serve(stream, hub, limits.header_timeout).await
                            }
                            Asks::Nothing { timed_out } => {
                                if timed_out {
                                    hub.stats
                                        .headers_timed_out
                                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        }
                        drop(slot);
                    });
                }
                // Out of file descriptors or similar: wait a little rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
    Ok(RunningServer {
        addr: local,
        hub,
        shutdown,
        accept_task,
    })
}

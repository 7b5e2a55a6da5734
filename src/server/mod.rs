//! The embedded reference messaging server (WebSocket, JSON frames from `protocol`): what
//! `chatload serve` runs and what `chatload run` starts in-process when no target is given.
//! Owns listening, accepting and shutting down; routing state is in `hub`.

mod connection;
mod delay_line;
pub mod hub;

pub use hub::HubStatsSnapshot;

use crate::scenario::ServerKnobs;
use hub::Hub;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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

    pub fn stats(&self) -> HubStatsSnapshot {
        self.hub.snapshot()
    }

    /// Stops accepting and closes every connection (clients see the connection drop).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
        let _ = self.accept_task.await;
    }
}

/// Binds `addr` (port 0 picks a free one) and serves until shut down.
pub async fn start(addr: &str, knobs: ServerKnobs) -> Result<RunningServer, BindError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })?;
    let local = listener.local_addr().map_err(|source| BindError {
        addr: addr.to_string(),
        source,
    })?;
    let hub = Arc::new(Hub::new(knobs));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept_hub = hub.clone();
    let accept_task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection::serve_connection(
                        stream,
                        accept_hub.clone(),
                        shutdown_rx.clone(),
                    ));
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

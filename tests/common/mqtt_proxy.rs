//! A TCP proxy in front of an MQTT broker that drops, or holds back for a while, every n-th
//! chat message the broker PUBLISHes to its clients (a delivery: chatload's `{"op":"msg"`
//! payload, not a receipt or a typing signal), and counts what it did, so a test knows
//! exactly which deliveries never reached chatload or reached it late. A held packet does
//! not hold up the packets behind it. Everything else passes through untouched.

use super::mqtt_flood::read_packet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

pub struct MqttProxy {
    pub port: u16,
    /// Chat messages the broker published to clients, and those dropped or delayed.
    pub publishes: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
    pub delayed: Arc<AtomicU64>,
}

/// What happens to every n-th chat PUBLISH.
#[derive(Clone, Copy)]
enum Fault {
    Drop,
    /// Delays by this much, among the packets of the proxy's first `window`.
    Delay {
        by: Duration,
        window: Duration,
    },
}

impl MqttProxy {
    /// Listens on a free loopback port and forwards to the broker at `broker_port`, dropping
    /// every `drop_every`-th chat PUBLISH.
    pub async fn start(broker_port: u16, drop_every: u64) -> MqttProxy {
        Self::with(broker_port, drop_every, Fault::Drop).await
    }

    /// The same, but every `every`-th chat PUBLISH in the first `window` after the proxy
    /// starts reaches its client `by` later (so a test can know all of them arrive before
    /// its run ends).
    pub async fn delaying(
        broker_port: u16,
        every: u64,
        by: Duration,
        window: Duration,
    ) -> MqttProxy {
        Self::with(broker_port, every, Fault::Delay { by, window }).await
    }

    async fn with(broker_port: u16, every: u64, fault: Fault) -> MqttProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let started = tokio::time::Instant::now();
        let port = listener.local_addr().expect("addr").port();
        let publishes = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let delayed = Arc::new(AtomicU64::new(0));
        let (p, d, l) = (publishes.clone(), dropped.clone(), delayed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = broker.set_nodelay(true);
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut broker_rx, mut broker_tx) = broker.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut broker_tx).await;
                    let _ = broker_tx.shutdown().await;
                });
                let (p, d, l) = (p.clone(), d.clone(), l.clone());
                // One writer to the client, fed in order; a delayed packet joins the queue
                // when its time comes.
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
                tokio::spawn(async move {
                    while let Some(packet) = rx.recv().await {
                        if client_tx.write_all(&packet).await.is_err() {
                            break;
                        }
                    }
                    let _ = client_tx.shutdown().await;
                });
                tokio::spawn(async move {
                    while let Some(packet) = read_packet(&mut broker_rx).await {
                        if packet[0] >> 4 == 3 && is_chat_message(&packet) {
                            let n = p.fetch_add(1, Relaxed) + 1;
                            let faulty = match fault {
                                Fault::Drop => true,
                                Fault::Delay { window, .. } => started.elapsed() < window,
                            };
                            if faulty && n.is_multiple_of(every) {
                                match fault {
                                    Fault::Drop => {
                                        d.fetch_add(1, Relaxed);
                                    }
                                    Fault::Delay { by, .. } => {
                                        l.fetch_add(1, Relaxed);
                                        let tx = tx.clone();
                                        tokio::spawn(async move {
                                            tokio::time::sleep(by).await;
                                            let _ = tx.send(packet);
                                        });
                                    }
                                }
                                continue;
                            }
                        }
                        if tx.send(packet).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        MqttProxy {
            port,
            publishes,
            dropped,
            delayed,
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

fn is_chat_message(packet: &[u8]) -> bool {
    const MARK: &[u8] = br#"{"op":"msg""#;
    packet.windows(MARK.len()).any(|w| w == MARK)
}

//! A TCP proxy in front of an XMPP server that drops every n-th chat message the server
//! sends to its clients (a `<message type='chat'>` with a body: a delivery, not a receipt,
//! a marker or a chat state) and counts what it did, so a test knows exactly which
//! deliveries never reached chatload. The server's stream is cut into stanzas with
//! chatload's own reader; everything else passes through byte for byte.

use chatload::transport::xmpp::xml::{Frame, cut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct XmppProxy {
    pub port: u16,
    /// Chat messages the server sent to clients, and those dropped.
    pub deliveries: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
}

impl XmppProxy {
    /// Listens on a free loopback port and forwards to the server at `server_port`,
    /// dropping every `every`-th chat delivery.
    pub async fn start(server_port: u16, every: u64) -> XmppProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let deliveries = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let (seen, gone) = (deliveries.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut sw).await;
                    let _ = sw.shutdown().await;
                });
                let (seen, gone) = (seen.clone(), gone.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = vec![0u8; 16 << 10];
                    loop {
                        let n = match sr.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let mut out = Vec::new();
                        let mut at = 0;
                        while let Ok(Some((frame, used))) = cut(&buf[at..]) {
                            let delivery = matches!(&frame, Frame::Stanza(e)
                                if e.name == "message"
                                    && e.attr("type") == Some("chat")
                                    && e.child("body", None).is_some());
                            let drop_it = delivery && (seen.fetch_add(1, Relaxed) + 1) % every == 0;
                            if drop_it {
                                gone.fetch_add(1, Relaxed);
                            } else {
                                out.extend_from_slice(&buf[at..at + used]);
                            }
                            at += used;
                        }
                        buf.drain(..at);
                        if cw.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                });
            }
        });
        XmppProxy {
            port,
            deliveries,
            dropped,
        }
    }
}

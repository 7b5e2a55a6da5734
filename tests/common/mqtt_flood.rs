//! A broker's saturated throughput, measured without chatload: MQTT 3.1.1 clients written
//! here from the packet layout (no chatload code, no MQTT library), shaped like chatload's
//! users (each subscribes to its own topic and publishes at QoS 1 to the others', one
//! unacknowledged PUBLISH at a time, so the broker reads one packet per wake-up as it does
//! from people chatting, not pipelined batches), acknowledging every delivery. They publish
//! as fast as the broker acknowledges; the deliveries counted per second after a warm-up are
//! what the broker can carry.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};

pub struct Flood {
    /// Connections; client `i` subscribes to `{topic_prefix}{i}`.
    pub clients: u32,
    /// Unacknowledged PUBLISH packets each client keeps on the wire.
    pub window: u32,
    pub payload: usize,
    pub topic_prefix: &'static str,
    pub warm_up: Duration,
    pub measure: Duration,
}

/// Deliveries per second the clients received during the measured window.
pub async fn deliveries_per_second(port: u16, f: &Flood) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let mut writers = Vec::new();
    for i in 0..f.clients {
        let (r, mut w) = connect(port, &format!("flood-{i}")).await;
        w.write_all(&subscribe(&format!("{}{i}", f.topic_prefix)))
            .await
            .expect("SUBSCRIBE");
        // One writer per connection: PUBLISH and PUBACK packets go out in order.
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let window = Arc::new(Semaphore::new(f.window as usize));
        tasks.push(tokio::spawn(write_all(w, rx)));
        tasks.push(tokio::spawn(read_all(
            r,
            tx.clone(),
            window.clone(),
            received.clone(),
        )));
        writers.push((tx, window));
    }
    // Let the SUBACKs land before publishing (a message to a topic with no subscriber yet
    // would be dropped, not counted).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let payload = vec![b'x'; f.payload];
    for (i, (tx, window)) in writers.into_iter().enumerate() {
        let topics: Vec<String> = (1..f.clients as usize)
            .map(|k| format!("{}{}", f.topic_prefix, (i + k * 7) % f.clients as usize))
            .collect();
        tasks.push(tokio::spawn(publish(
            tx,
            window,
            topics,
            payload.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(f.warm_up).await;
    let (from, start) = (received.load(Relaxed), Instant::now());
    tokio::time::sleep(f.measure).await;
    let rate = (received.load(Relaxed) - from) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for t in tasks {
        t.abort();
    }
    rate
}

async fn connect(port: u16, client_id: &str) -> (OwnedReadHalf, OwnedWriteHalf) {
    let s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("broker");
    s.set_nodelay(true).expect("nodelay");
    let (mut r, mut w) = s.into_split();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    put_str(&mut body, client_id);
    w.write_all(&packet(0x10, &body)).await.expect("CONNECT");
    let connack = read_packet(&mut r).await.expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0], "the broker refused {client_id}");
    (r, w)
}

async fn write_all(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(p) = rx.recv().await {
        if w.write_all(&p).await.is_err() {
            return;
        }
    }
}

/// Counts and acknowledges deliveries; a PUBACK for one of ours opens the window again.
async fn read_all(
    r: OwnedReadHalf,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    window: Arc<Semaphore>,
    received: Arc<AtomicU64>,
) {
    let mut r = tokio::io::BufReader::new(r);
    while let Some(p) = read_packet(&mut r).await {
        match p[0] & 0xf0 {
            0x30 => {
                // PUBLISH at QoS 1: topic, then the packet id to acknowledge.
                let (_, body) = split_header(&p);
                let topic_len = u16::from_be_bytes([body[0], body[1]]) as usize;
                let id = [body[2 + topic_len], body[3 + topic_len]];
                received.fetch_add(1, Relaxed);
                if tx.send(vec![0x40, 2, id[0], id[1]]).is_err() {
                    return;
                }
            }
            0x40 => window.add_permits(1),
            _ => {}
        }
    }
}

async fn publish(
    tx: mpsc::UnboundedSender<Vec<u8>>,
    window: Arc<Semaphore>,
    topics: Vec<String>,
    payload: Vec<u8>,
    stop: Arc<AtomicBool>,
) {
    let mut id: u16 = 0;
    let mut next = 0;
    while !stop.load(Relaxed) {
        let Ok(permit) = window.acquire().await else {
            return;
        };
        permit.forget();
        id = id.wrapping_add(1).max(1);
        let mut body = Vec::with_capacity(payload.len() + 32);
        put_str(&mut body, &topics[next % topics.len()]);
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&payload);
        next += 1;
        if tx.send(packet(0x32, &body)).is_err() {
            return;
        }
    }
}

fn subscribe(topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    put_str(&mut body, topic);
    body.push(1);
    packet(0x82, &body)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// (fixed header with its length bytes, body)
fn split_header(p: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 1;
    while p[i] & 0x80 != 0 {
        i += 1;
    }
    p.split_at(i + 1)
}

/// One whole MQTT packet (fixed header, remaining length, body) as it came.
pub async fn read_packet(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut packet = vec![r.read_u8().await.ok()?];
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = r.read_u8().await.ok()?;
        packet.push(b);
        len |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
        if shift > 21 {
            return None;
        }
    }
    let start = packet.len();
    packet.resize(start + len, 0);
    r.read_exact(&mut packet[start..]).await.ok()?;
    Some(packet)
}

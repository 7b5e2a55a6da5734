//! One client connection of the reference server: reads frames, routes them through the
//! [`Hub`], and writes what is due (the delay knob) without ever blocking its reads.

use super::hub::{ConnHandle, Hub, Outbound};
use crate::protocol::{self, Delivery};
use crate::wsio::{Duplex, Event};
use chatload_protocol::ws_stream::WsStream;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

type Connection = Duplex<WsStream<TcpStream>>;

/// A held-back delivery (reorder fault) goes out after this long if no other delivery follows.
const HOLD_LIMIT: Duration = Duration::from_millis(200);
/// A client that sends nothing, not even hello, for this long is disconnected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one WebSocket connection; its upgrade must arrive within `header_timeout`.
pub async fn serve_connection(
    stream: TcpStream,
    hub: Arc<Hub>,
    mut shutdown: watch::Receiver<bool>,
    header_timeout: Duration,
) {
    let _ = stream.set_nodelay(true);
    // Boxed: the handshake's state lives only until the upgrade, so it is not part of every
    // connection's task for its whole life.
    let accept = Box::pin(super::upgrade::accept(
        stream,
        crate::wsio::small_buffers(hub.limits().max_frame()),
    ));
    let ws = match tokio::time::timeout(header_timeout, accept).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(super::upgrade::UpgradeError::Refused(_))) => {
            hub.stats.malformed.fetch_add(1, Relaxed);
            return;
        }
        Ok(Err(super::upgrade::UpgradeError::Io(_))) => return,
        Err(_) => {
            hub.stats.headers_timed_out.fetch_add(1, Relaxed);
            return;
        }
    };
    hub.stats.connections.fetch_add(1, Relaxed);
    let mut writer: Connection = Duplex::new(ws);
    let (tx, rx) = super::outbox::outbox();
    let conn_id = hub.new_conn_id();
    let mut user: Option<u32> = None;
    // The run the session said hello in (`protocol::hello`).
    let mut run = 0u64;
    // Frames not yet due (delay knob), in arrival order; constant delay keeps them sorted.
    let mut pending: VecDeque<Outbound> = VecDeque::new();
    let mut held: Option<(Utf8Bytes, Instant)> = None;
    let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
    // Stall fault: nothing is written before this.
    let mut stalled_until: Option<Instant> = None;
    let mut reset = false;
    // Bytes of the deliveries replayed at hello, allowed beside `max_write_queue`: they are
    // the hub's own kept copies (shared, bounded by its queues), not the client's doing.
    let mut replayed = 0usize;
    let mut closing = false;

    loop {
        if writer.queued_bytes() > hub.limits().max_write_queue + replayed {
            // A client that stopped reading; what it was owed stays kept for its next
            // connection, so cutting it loses nothing of the run's.
            hub.stats.slow_readers.fetch_add(1, Relaxed);
            reset = true;
            break;
        }
        let next_due = pending
            .front()
            .map(|o| tokio::time::Instant::from_std(stalled_until.map_or(o.due, |s| s.max(o.due))));
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            event = writer.event() => {
                let text = match event {
                    Event::Read(Some(Ok(Message::Text(t)))) => t,
                    Event::Read(Some(Ok(Message::Ping(p)))) => { writer.push(Message::Pong(p)); continue; }
                    Event::Read(Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })))) => {
                        // Said to the client in its close, so that its user reads why.
                        hub.stats.malformed.fetch_add(1, Relaxed);
                        writer.push(Message::Close(Some(CloseFrame {
                            code: CloseCode::Size,
                            reason: format!("a frame of {size} bytes; this server reads at most {max_size}").into(),
                        })));
                        break;
                    }
                    Event::Read(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => break,
                    Event::Read(Some(Ok(_))) | Event::Wrote(Ok(())) => continue,
                    Event::Wrote(Err(_)) => break,
                };
                let (greeted, before) = (user.is_some(), writer.queued_bytes());
                if !handle_frame(&text, &hub, (&mut user, &mut run), conn_id, &tx, &mut writer) {
                    break;
                }
                if !greeted && user.is_some() {
                    replayed = writer.queued_bytes().saturating_sub(before);
                }
            }
            _ = rx.ready() => rx.take_into(&mut pending),
            _ = tokio::time::sleep_until(next_due.unwrap_or(hello_deadline)), if next_due.is_some_and(|d| d > tokio::time::Instant::now()) => {}
            _ = tokio::time::sleep_until(hello_deadline), if user.is_none() => break,
            _ = tokio::time::sleep_until(held.as_ref().map_or(hello_deadline, |(_, at)| (*at + HOLD_LIMIT).into())), if held.is_some() => {}
        }
        let now = Instant::now();
        if stalled_until.is_some_and(|s| s <= now) {
            stalled_until = None;
        }
        while stalled_until.is_none() && pending.front().is_some_and(|o| o.due <= now) {
            let Some(out) = pending.pop_front() else {
                break;
            };
            if out.reset {
                hub.stats.resets.fetch_add(1, Relaxed);
                reset = true;
                break;
            }
            if out.close {
                writer.push(Message::Text(out.text));
                closing = true;
                break;
            }
            if let Some(d) = out.stall {
                stalled_until = Some(now + d);
            }
            if out.delivery && out.hold_back && held.is_none() {
                held = Some((out.text, now));
                continue;
            }
            writer.push(Message::Text(out.text));
            if out.delivery {
                hub.stats.written.fetch_add(1, Relaxed);
            }
            if out.delivery
                && let Some((h, _)) = held.take()
            {
                writer.push(Message::Text(h));
                hub.stats.written.fetch_add(1, Relaxed);
                hub.stats.reordered.fetch_add(1, Relaxed);
            }
        }
        if let Some((h, _)) = held.take_if(|(_, at)| now.duration_since(*at) >= HOLD_LIMIT) {
            writer.push(Message::Text(h));
            hub.stats.written.fetch_add(1, Relaxed);
        }
        if reset || closing {
            break;
        }
    }
    if let Some(u) = user {
        hub.detach(u, conn_id);
    }
    if !reset {
        let _ = tokio::time::timeout(Duration::from_millis(200), writer.close()).await;
    }
}

/// Acts on one client frame. Returns false when the connection must close.
fn handle_frame(
    text: &str,
    hub: &Arc<Hub>,
    (user, run): (&mut Option<u32>, &mut u64),
    conn_id: u64,
    tx: &super::outbox::OutboxSender,
    writer: &mut Connection,
) -> bool {
    let frame = match protocol::decode(text) {
        Ok(f) => f,
        Err(e) => {
            hub.stats.malformed.fetch_add(1, Relaxed);
            writer.push(Message::text(protocol::error(400, &e.to_string())));
            return true;
        }
    };
    match (frame.op.as_ref(), *user) {
        ("hello", _) => {
            let Some(u) = frame.user else {
                writer.push(Message::text(protocol::error(400, "hello needs `user`")));
                return true;
            };
            let last_seq = frame.last_seq.unwrap_or(0);
            *user = Some(u);
            *run = frame.run.unwrap_or(0);
            let missed = hub.attach(
                u,
                last_seq,
                *run,
                ConnHandle {
                    conn_id,
                    tx: tx.clone(),
                },
            );
            writer.push(Message::text(protocol::hello_ok(u, last_seq)));
            for text in missed {
                writer.push(Message::Text(text));
            }
        }
        ("group", _) => match (frame.group, frame.members) {
            (Some(g), Some(members)) => {
                let n = members.len();
                if hub.define_group(g, members) {
                    writer.push(Message::text(protocol::group_ok(g)));
                } else {
                    writer.push(Message::text(protocol::error(
                        413,
                        &format!(
                            "a group of {n} members is more than this server takes (--max-group-size {})",
                            hub.limits().max_group_size
                        ),
                    )));
                }
            }
            _ => writer.push(Message::text(protocol::error(
                400,
                "group needs `group` and `members`",
            ))),
        },
        ("ping", _) => writer.push(Message::text(protocol::PONG)),
        (_, None) => {
            writer.push(Message::text(protocol::error(401, "say hello first")));
        }
        ("send", Some(from)) => {
            let accepted_at = Instant::now();
            let (Some(id), Some(t), Some(s)) = (frame.id, frame.t, frame.s) else {
                hub.stats.malformed.fetch_add(1, Relaxed);
                writer.push(Message::text(protocol::error(
                    400,
                    "send needs `id`, `t` and `s`",
                )));
                return true;
            };
            let body = frame.body.as_deref().unwrap_or("");
            if hub.confirms_send() {
                let sent: Utf8Bytes = protocol::sent(id, t, s).into();
                let delay = hub.knobs().ack_delay;
                if delay.is_zero() || !hub.write_later(tx, sent.clone(), delay) {
                    writer.push(Message::Text(sent));
                }
            }
            if !hub.accept_send(from, id) {
                return true;
            }
            hub.stats.accepted.fetch_add(1, Relaxed);
            let base = Delivery {
                seq: 0,
                id,
                from,
                to: 0,
                group: frame.group,
                intended_us: t,
                sent_us: s,
                body,
                wamid: 0,
                kind: frame.k.as_deref(),
                media_bytes: frame.n.unwrap_or(0),
            };
            if let Err((code, why)) =
                hub.user_send(frame.to, frame.group, base, (accepted_at, *run))
            {
                writer.push(Message::text(protocol::error(code, why)));
            }
        }
        ("ack", Some(by)) => {
            if let Some(seq) = frame.seq {
                hub.acknowledge(by, seq);
            }
            match (frame.id, frame.from, frame.t, frame.s, frame.w) {
                (_, Some(from), _, _, Some(w)) if protocol::is_business(from) => {
                    hub.business.delivered(w)
                }
                (Some(id), Some(from), Some(t), Some(s), _) => {
                    hub.notify(from, protocol::receipt(id, by, t, s).into())
                }
                _ => {}
            }
        }
        ("read", Some(by)) => match (frame.id, frame.from, frame.w) {
            (_, Some(from), Some(w)) if protocol::is_business(from) => hub.business.read(w),
            (Some(id), Some(from), _) => hub.notify(
                from,
                protocol::read_receipt(id, by, frame.r.unwrap_or(0)).into(),
            ),
            _ => writer.push(Message::text(protocol::error(
                400,
                "read needs `id` and `from`",
            ))),
        },
        ("typing", Some(from)) => {
            if let Some(to) = frame.to {
                hub.notify(to, protocol::typing_seen(from, frame.r.unwrap_or(0)).into());
            }
        }
        ("history", Some(_)) => {
            match frame
                .group
                .and_then(|g| hub.group_history(g).map(|h| (g, h)))
            {
                Some((g, (count, bytes))) => writer.push(Message::text(protocol::history_ok(
                    g,
                    count,
                    frame.r.unwrap_or(0),
                    protocol::filler_body(bytes),
                ))),
                None => writer.push(Message::text(protocol::error(404, "unknown group"))),
            }
        }
        ("presence", Some(from)) => {
            let state = frame.state.as_deref().unwrap_or("online");
            let text: Utf8Bytes = protocol::presence_seen(from, state, frame.r.unwrap_or(0)).into();
            for &m in frame.members.as_deref().unwrap_or(&[]) {
                hub.notify(m, text.clone());
            }
        }
        (other, _) => {
            hub.stats.malformed.fetch_add(1, Relaxed);
            writer.push(Message::text(protocol::error(
                400,
                &format!("unknown op `{other}`"),
            )));
        }
    }
    true
}

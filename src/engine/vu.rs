//! One virtual consumer: holds its WebSocket, sends its scheduled messages when the
//! dispatcher hands them over, receives deliveries and acknowledges them, reconnects with
//! backoff, and records everything it sees. Runs in bounded slices so goose stays in control.

use super::context::RunContext;
use super::reconnect::{AfterFailure, Reconnector};
use crate::metrics::{ErrorKind, LATE_SEND_US, Ledger, Metric, Owed, Received};
use crate::protocol::{self, Recipient};
use crate::transport::ws::{self, WsConnection};
use crate::workload::Order;
use crate::workload::schedule::pattern_of;
use futures_util::StreamExt;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

pub struct VirtualUser {
    user: u32,
    ctx: Arc<RunContext>,
    inbox: Option<mpsc::Receiver<Order>>,
    conn: Option<WsConnection>,
    last_seq: u64,
    /// Per (conversation, sender): the latest message sequence seen, to spot reordering.
    last_seen: FxHashMap<(u32, u32), u64>,
    reconnect: Reconnector,
    /// Messages written but not yet acknowledged; written again after a reconnect, as a
    /// messaging client's outbox does (the server drops the copies it already has).
    outbox: VecDeque<Order>,
}

impl VirtualUser {
    pub fn new(user: u32, ctx: Arc<RunContext>) -> Option<Self> {
        let inbox = ctx.take_inbox(user)?;
        Some(VirtualUser {
            user,
            ctx,
            inbox: Some(inbox),
            conn: None,
            last_seq: 0,
            last_seen: FxHashMap::default(),
            reconnect: Reconnector::new(user),
            outbox: VecDeque::new(),
        })
    }

    /// Runs until `until`, then returns so goose can check for a stop between slices.
    pub async fn drive(&mut self, until: Instant) {
        loop {
            let now = Instant::now();
            if now >= until {
                return;
            }
            let now_us = self.ctx.now_us();
            let want_online =
                !self.ctx.finished.load(Relaxed) && self.ctx.profile.online(self.user, now_us);
            // Wake for the slice end or this user's next scheduled connect or disconnect.
            let change = self
                .ctx
                .profile
                .next_change(self.user, now_us)
                .map_or(until, |t| self.ctx.instant_at(t));
            let storm = self
                .reconnect
                .next_storm_at(&self.ctx.storms)
                .map_or(until, |t| self.ctx.instant_at(t));
            let wake = until.min(change).min(storm);
            if let Some(pattern) = self.reconnect.strike(
                &self.ctx.storms,
                self.ctx.scenario.seed,
                self.user,
                now_us,
                self.conn.is_some(),
                now,
            ) {
                // Cut without a close handshake, as a network failure would.
                self.conn = None;
                self.ctx.set_connected(self.user, false);
                self.ctx.recorders.local().counters[pattern as usize].dropped_connections += 1;
                continue;
            }
            if self.conn.is_none() {
                let want_online = want_online && !self.reconnect.gave_up();
                if want_online && now >= self.reconnect.next_attempt() {
                    self.connect().await;
                } else {
                    let wake = if want_online {
                        self.reconnect.next_attempt().min(wake)
                    } else {
                        wake
                    };
                    tokio::time::sleep_until(wake.into()).await;
                }
                continue;
            }
            if !want_online {
                self.disconnect().await;
                continue;
            }
            self.step(wake).await;
        }
    }

    /// One wait for whatever happens first on a live connection.
    async fn step(&mut self, wake: Instant) {
        let (Some(conn), Some(inbox)) = (self.conn.as_mut(), self.inbox.as_mut()) else {
            return;
        };
        enum Happened {
            Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
            Written(Result<(), tokio_tungstenite::tungstenite::Error>),
            Order(Option<Order>),
            Tick,
        }
        let happened = tokio::select! {
            biased;
            f = conn.reader.next() => Happened::Frame(f),
            w = conn.writer.progress(), if conn.writer.has_work() => Happened::Written(w),
            o = inbox.recv() => Happened::Order(o),
            _ = tokio::time::sleep_until(wake.into()) => Happened::Tick,
        };
        match happened {
            Happened::Frame(Some(Ok(Message::Text(t)))) => self.on_frame(&t),
            Happened::Frame(Some(Ok(Message::Close(_))) | None) => self.lost(
                ErrorKind::ConnectionClosed,
                "the target closed the connection".into(),
            ),
            Happened::Frame(Some(Ok(_))) => {}
            Happened::Frame(Some(Err(e))) | Happened::Written(Err(e)) => {
                self.lost(ws::classify(&e), e.to_string())
            }
            Happened::Written(Ok(())) | Happened::Tick => {}
            Happened::Order(Some(order)) => {
                self.send(order);
                // Take whatever else is already due without another wake-up.
                for _ in 0..63 {
                    match self.inbox.as_mut().map(|i| i.try_recv()) {
                        Some(Ok(o)) => self.send(o),
                        _ => break,
                    }
                }
            }
            Happened::Order(None) => {}
        }
    }

    async fn connect(&mut self) {
        let started = Instant::now();
        match ws::connect(
            &self.ctx.url,
            self.user,
            self.last_seq,
            self.ctx.connect_timeout,
        )
        .await
        {
            Ok(mut conn) => {
                {
                    let mut rec = self.ctx.recorders.local();
                    let slot = rec.no_pattern();
                    rec.record(slot, Metric::Connect, started.elapsed().as_micros() as u64);
                }
                if let Some((pattern, took)) = self.reconnect.connected(Instant::now()) {
                    let mut rec = self.ctx.recorders.local();
                    rec.record(pattern as usize, Metric::Reconnect, took.as_micros() as u64);
                    rec.counters[pattern as usize].reconnects += 1;
                }
                let now_us = self.ctx.now_us();
                for o in &self.outbox {
                    let body = protocol::filler_body(o.size as usize);
                    conn.writer.push(Message::text(protocol::send(
                        o.id,
                        o.to,
                        o.intended_us,
                        now_us,
                        body,
                    )));
                }
                if !self.outbox.is_empty() {
                    let mut rec = self.ctx.recorders.local();
                    for o in &self.outbox {
                        rec.counters[o.pattern as usize].retransmitted += 1;
                    }
                }
                let early = std::mem::take(&mut conn.early);
                self.conn = Some(conn);
                self.ctx.set_connected(self.user, true);
                for frame in early {
                    if let Message::Text(t) = frame {
                        self.on_frame(&t);
                    }
                }
            }
            Err(e) => {
                self.ctx
                    .recorders
                    .local()
                    .error(e.kind, || e.detail.clone());
                if let AfterFailure::GiveUp(pattern) = self.reconnect.failed(Instant::now()) {
                    self.ctx.recorders.local().counters[pattern as usize].gave_up += 1;
                }
            }
        }
    }

    /// Leaves on schedule: writes what is queued, closes, and marks the user offline.
    pub async fn disconnect(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            self.ctx.set_connected(self.user, false);
            let _ = tokio::time::timeout(Duration::from_millis(500), conn.writer.close()).await;
        }
    }

    /// The connection broke: count it and come back after a backoff.
    fn lost(&mut self, kind: ErrorKind, detail: String) {
        self.conn = None;
        self.ctx.set_connected(self.user, false);
        self.ctx.recorders.local().error(kind, || detail);
        self.reconnect.lost(Instant::now());
    }

    fn send(&mut self, order: Order) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let ctx = &self.ctx;
        let owed = match order.to {
            Recipient::User(u) => Some(Owed::One(u)),
            Recipient::Group(g) => ctx
                .population
                .group(g)
                .map(|m| Ledger::group_owed(m, order.sender)),
        };
        let Some(owed) = owed else { return };
        let now = ctx.now_us();
        let owed_count = ctx.ledger.open(
            order.id,
            order.pattern,
            order.sender,
            order.intended_us,
            owed,
        );
        let frame = protocol::send(
            order.id,
            order.to,
            order.intended_us,
            now,
            protocol::filler_body(order.size as usize),
        );
        conn.writer.push(Message::text(frame));
        self.outbox.push_back(order);
        let lag = now.saturating_sub(order.intended_us);
        let mut rec = ctx.recorders.local();
        let p = order.pattern as usize;
        rec.record(p, Metric::SendLag, lag);
        let c = &mut rec.counters[p];
        c.messages_sent += 1;
        c.deliveries_owed += owed_count as u64;
        if lag > LATE_SEND_US {
            c.late_sends += 1;
        }
    }

    fn on_frame(&mut self, text: &str) {
        // A borrow, not a clone: every virtual user shares this Arc, and bumping its count on
        // every frame would make one cache line the hottest contended spot of the run.
        let ctx = &self.ctx;
        let Ok(frame) = protocol::decode(text) else {
            ctx.recorders.local().error(ErrorKind::Protocol, || {
                format!(
                    "undecodable frame: {}",
                    text.chars().take(120).collect::<String>()
                )
            });
            return;
        };
        let now = ctx.now_us();
        match frame.op.as_ref() {
            "msg" => {
                let (Some(seq), Some(id), Some(from), Some(t), Some(s)) =
                    (frame.seq, frame.id, frame.from, frame.t, frame.s)
                else {
                    ctx.recorders.local().error(ErrorKind::Protocol, || {
                        format!(
                            "msg frame without seq, id, from, t or s: {}",
                            text.chars().take(120).collect::<String>()
                        )
                    });
                    return;
                };
                self.last_seq = self.last_seq.max(seq);
                if let Some(conn) = self.conn.as_mut() {
                    conn.writer
                        .push(Message::text(protocol::ack(seq, id, from, t, s)));
                }
                let verdict = ctx
                    .ledger
                    .receive(id, self.user, |id| ctx.issued_pattern(id));
                let mut rec = ctx.recorders.local();
                match verdict {
                    Received::First {
                        pattern,
                        last_of_message,
                    } => {
                        let p = pattern as usize;
                        let online_at_send = ctx.profile.eligible(self.user, t);
                        if online_at_send {
                            rec.record(p, Metric::Delivery, now.saturating_sub(t));
                            rec.record(p, Metric::DeliveryService, now.saturating_sub(s));
                            if last_of_message && frame.group.is_some() {
                                rec.record(p, Metric::Fanout, now.saturating_sub(t));
                            }
                        } else {
                            rec.record(p, Metric::DeliveryOffline, now.saturating_sub(t));
                        }
                        rec.counters[p].delivered += 1;
                        let key = (frame.group.unwrap_or(u32::MAX), from);
                        let last = self.last_seen.entry(key).or_insert(0);
                        if id < *last {
                            rec.counters[p].reordered += 1;
                        } else {
                            *last = id;
                        }
                    }
                    Received::Duplicate { pattern } => {
                        rec.counters[pattern as usize].duplicates += 1
                    }
                    Received::Unexpected => {
                        let slot = rec.no_pattern();
                        rec.counters[slot].unexpected += 1;
                    }
                }
            }
            "sent" => {
                let (Some(id), Some(t), Some(s)) = (frame.id, frame.t, frame.s) else {
                    return;
                };
                // The server acks in order: drop everything up to this id from the outbox; an
                // ack for nothing outstanding (a stray) is not measured.
                let mut outstanding = false;
                while let Some(front) = self.outbox.front().map(|o| o.id).filter(|f| *f <= id) {
                    outstanding |= front == id;
                    self.outbox.pop_front();
                }
                if !outstanding {
                    return;
                }
                let p = (pattern_of(id) as usize).min(ctx.scenario.patterns.len());
                let mut rec = ctx.recorders.local();
                rec.record(p, Metric::Send, now.saturating_sub(t));
                rec.record(p, Metric::SendService, now.saturating_sub(s));
                rec.counters[p].acked += 1;
            }
            "receipt" => {
                let (Some(id), Some(t)) = (frame.id, frame.t) else {
                    return;
                };
                let p = (pattern_of(id) as usize).min(ctx.scenario.patterns.len());
                let mut rec = ctx.recorders.local();
                rec.record(p, Metric::Receipt, now.saturating_sub(t));
                rec.counters[p].receipts += 1;
            }
            "error" => ctx.recorders.local().error(ErrorKind::ServerError, || {
                format!(
                    "the target answered: {}",
                    text.chars().take(200).collect::<String>()
                )
            }),
            _ => {}
        }
    }

    /// Ends the user: closes its connection and hands its inbox back for a later run of it.
    pub async fn finish(mut self) {
        self.disconnect().await;
        if let Some(inbox) = self.inbox.take() {
            self.ctx.return_inbox(self.user, inbox);
        }
    }
}

//! What a virtual user does with each frame it receives: deliveries are acknowledged, checked
//! against the ledger and measured (and may lead to a read or a reply later); acks, receipts,
//! typing and presence signals are measured; server errors are counted.

use super::VirtualUser;
use crate::metrics::{ErrorKind, Metric, Received};
use crate::protocol::{self, BUSINESS_BASE};
use crate::workload::schedule::pattern_of;
use tokio_tungstenite::tungstenite::Message;

fn excerpt(text: &str) -> String {
    text.chars().take(160).collect()
}

impl VirtualUser {
    pub(super) fn on_frame(&mut self, text: &str) {
        // A borrow, not a clone: every virtual user shares this Arc, and bumping its count on
        // every frame would make one cache line the hottest contended spot of the run.
        let ctx = &self.ctx;
        let Ok(frame) = protocol::decode(text) else {
            ctx.recorders.local().error(ErrorKind::Protocol, || {
                format!("undecodable frame: {}", excerpt(text))
            });
            return;
        };
        let now = ctx.now_us();
        let patterns = ctx.scenario.patterns.len();
        match frame.op.as_ref() {
            "msg" => {
                let (Some(seq), Some(id), Some(from), Some(t), Some(s)) =
                    (frame.seq, frame.id, frame.from, frame.t, frame.s)
                else {
                    ctx.recorders.local().error(ErrorKind::Protocol, || {
                        format!("msg frame without seq, id, from, t or s: {}", excerpt(text))
                    });
                    return;
                };
                let wamid = frame.w.unwrap_or(0);
                self.last_seq = self.last_seq.max(seq);
                if let Some(conn) = self.conn.as_mut() {
                    conn.writer
                        .push(Message::text(protocol::ack(seq, id, from, t, s, wamid)));
                }
                let verdict = ctx
                    .ledger
                    .receive(id, self.user, |id| ctx.issued_pattern(id));
                let mut rec = ctx.recorders.local();
                match verdict {
                    Received::First {
                        pattern,
                        last_of_message,
                        ..
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
                        drop(rec);
                        if let Some(storm) = frame
                            .group
                            .and_then(|g| ctx.storm_groups.iter().find(|s| s.group == g))
                        {
                            self.reactions.decide_open(
                                storm,
                                ctx.scenario.seed,
                                id,
                                self.user,
                                now,
                            );
                        }
                        if frame.group.is_none()
                            && let Some(Some(model)) = ctx.reactions.get(p)
                        {
                            let business =
                                protocol::is_business(from).then(|| from - BUSINESS_BASE);
                            if !self.reactions.decide(
                                model,
                                ctx.scenario.seed,
                                (id, self.user, from, wamid, pattern),
                                now,
                                business,
                            ) {
                                ctx.recorders.local().counters[p].reads_skipped += 1;
                            }
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
                let p = (pattern_of(id) as usize).min(patterns);
                let mut rec = ctx.recorders.local();
                rec.record(p, Metric::Send, now.saturating_sub(t));
                rec.record(p, Metric::SendService, now.saturating_sub(s));
                rec.counters[p].acked += 1;
            }
            "receipt" => {
                let Some(id) = frame.id else { return };
                let p = (pattern_of(id) as usize).min(patterns);
                let mut rec = ctx.recorders.local();
                if frame.state.as_deref() == Some("read") {
                    rec.counters[p].read_receipts += 1;
                    if let Some(r) = frame.r.filter(|r| *r > 0) {
                        rec.record(p, Metric::ReadReceipt, now.saturating_sub(r));
                    }
                } else if let Some(t) = frame.t {
                    rec.record(p, Metric::Receipt, now.saturating_sub(t));
                    rec.counters[p].receipts += 1;
                }
            }
            "typing" | "presence" => {
                let p = match (frame.op.as_ref(), frame.from) {
                    ("presence", _) => ctx
                        .presence
                        .as_ref()
                        .map_or(patterns, |m| m.pattern as usize),
                    (_, Some(f)) if protocol::is_business(f) => patterns,
                    _ => ctx.typing_pattern.map_or(patterns, |p| p as usize),
                };
                let mut rec = ctx.recorders.local();
                if frame.op == "typing" {
                    rec.counters[p].typing_seen += 1;
                } else {
                    rec.counters[p].presence_seen += 1;
                }
                if let Some(r) = frame.r.filter(|r| *r > 0) {
                    rec.record(p, Metric::Signal, now.saturating_sub(r));
                }
            }
            "goaway" => {
                self.goaway = Some(std::time::Duration::from_millis(
                    frame.after_ms.unwrap_or(0),
                ));
            }
            "history_ok" => {
                let storm = frame
                    .group
                    .and_then(|g| ctx.storm_groups.iter().find(|s| s.group == g));
                let p = storm.map_or(patterns, |s| s.pattern as usize);
                let mut rec = ctx.recorders.local();
                rec.counters[p].history_received += 1;
                if let Some(r) = frame.r.filter(|r| *r > 0) {
                    rec.record(p, Metric::History, now.saturating_sub(r));
                }
            }
            "error" => ctx.recorders.local().error(ErrorKind::ServerError, || {
                format!("the target answered: {}", excerpt(text))
            }),
            _ => {}
        }
    }
}

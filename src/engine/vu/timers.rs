//! What a user does when one of its own deadlines comes: a heartbeat on the open
//! connection, and the reactions (reads, history requests, replies) whose time has come.
//! Owns sending them and counting what was said; when a reaction is due is `reactions`'s
//! decision, and when the user wakes is `drive`'s.

use super::VirtualUser;
use super::reactions::Pending;
use crate::protocol::Recipient;
use crate::protocol::id::{REACTION_BIT, compose as message_id};
use crate::transport::{Outgoing, Session};
use crate::workload::Order;
use crate::workload::schedule::Action;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

impl VirtualUser {
    /// Heartbeats and reactions that have come due.
    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        if let (Some(at), Some(model)) = (self.next_heartbeat, self.ctx.presence.as_ref())
            && at <= now
        {
            if let Some(conn) = self.conn.as_mut()
                && conn.push(Outgoing::Heartbeat)
            {
                self.ctx.recorders.local().counters[model.pattern as usize].heartbeats += 1;
            }
            self.next_heartbeat = Some(now + model.heartbeat);
        }
        let now_us = self.ctx.now_us();
        while self.conn.is_some() {
            let Some((due, pending)) = self.reactions.pop_due(now_us) else {
                break;
            };
            match pending {
                Pending::Read { id, from, wamid } => {
                    let said = self.conn.as_mut().is_some_and(|conn| {
                        conn.push(Outgoing::Read {
                            id,
                            from,
                            wamid,
                            r: due,
                            s: now_us,
                        })
                    });
                    let p = crate::protocol::id::pattern_of(id) as usize;
                    if said && let Some(c) = self.ctx.recorders.local().counters.get_mut(p) {
                        c.reads += 1;
                    }
                }
                Pending::OpenGroup { group, pattern } => {
                    let said = self
                        .conn
                        .as_mut()
                        .is_some_and(|conn| conn.push(Outgoing::History { group, r: due }));
                    if said {
                        self.ctx.recorders.local().counters[pattern as usize].history_requests += 1;
                    }
                }
                Pending::Reply {
                    business,
                    pattern,
                    of: _,
                } => {
                    let n = self.ctx.reaction_seq.fetch_add(1, Relaxed);
                    let order = Order {
                        intended_us: due,
                        id: message_id(REACTION_BIT | n, pattern),
                        pattern,
                        sender: self.user,
                        to: Recipient::Business(business),
                        size: 16,
                        action: Action::CustomerMessage { interactive: false },
                    };
                    {
                        let mut rec = self.ctx.recorders.local();
                        let c = &mut rec.counters[pattern as usize];
                        c.replies += 1;
                        c.messages_scheduled += 1;
                    }
                    self.send(order);
                }
            }
        }
    }
}

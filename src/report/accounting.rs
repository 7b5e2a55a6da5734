//! Message accounting: where every owed delivery and every scheduled message went, and the
//! two identities that must hold. Owns the model and how counters and the end's settlement
//! become it; not how the end is settled (`engine::settle`) nor how it is shown.

use crate::metrics::Counters;
use serde::{Deserialize, Serialize};

/// Message accounting, per recipient of every message:
/// `sent = delivered + lost + in_flight + unverified + failed`, and per message:
/// `messages_scheduled = messages_sent + not_sent`. A delivery is `delivered` only if it
/// arrived within `loss_deadline` of its intended send time (or of the start of the
/// recipient's connection, for a recipient who was offline); `lost` includes those that
/// arrived later (`delivered_late`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accounting {
    /// Deliveries owed: one per recipient of every message sent.
    pub sent: u64,
    /// Messages this run had to send: written to the target (`messages_sent`) or not.
    #[serde(default)]
    pub messages_scheduled: u64,
    /// Messages written to the target (a group message counts once).
    pub messages_sent: u64,
    pub acked: u64,
    /// Messages written that asked for the target's confirmation and had neither it nor a
    /// refusal when the run ended: their send latency is in no histogram.
    #[serde(default)]
    pub unacknowledged: u64,
    pub delivered: u64,
    /// Past their deadline: never arrived, or arrived late.
    pub lost: u64,
    /// Part of `lost`: arrived after the deadline.
    #[serde(default)]
    pub delivered_late: u64,
    /// Still within their deadline when the run ended (the drain waits for them).
    pub in_flight: u64,
    /// Owed to a recipient who was offline, on a target whose protocol cannot show what it
    /// kept for them (no session resume); a `loss` rule fails on these unless the scenario
    /// says `offline_delivery = "unverified_ok"`.
    #[serde(default)]
    pub unverified: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub receipts: u64,
    pub late_sends: u64,
    /// Scheduled messages never written to the target, in all and by reason.
    pub not_sent: u64,
    #[serde(default)]
    pub not_sent_reasons: NotSentReasons,
    /// Messages written and refused by the target for good (owed to no one).
    #[serde(default)]
    pub refused: u64,
    pub unexpected: u64,
    /// Deliveries of an earlier run's messages (numbered before this run began) that the
    /// target kept and handed over in this one; in no other count.
    #[serde(default)]
    pub earlier_runs: u64,
    /// Sends written again after a reconnect (unacknowledged when the connection dropped).
    #[serde(default)]
    pub retransmitted: u64,
    /// Business messages the API accepted and then reported `failed` (owed nothing more).
    #[serde(default)]
    pub failed: u64,
}

/// Why scheduled messages were not sent.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NotSentReasons {
    /// The sender never had a connection.
    pub sender_never_connected: u64,
    /// The sender had lost its connection.
    pub sender_disconnected: u64,
    /// chatload fell behind its schedule (or held business sends back to the rate tier).
    pub chatload_behind: u64,
    /// The target's protocol has no way to say the message.
    pub unsendable: u64,
}

impl NotSentReasons {
    pub fn add(&mut self, o: &NotSentReasons) {
        self.sender_never_connected += o.sender_never_connected;
        self.sender_disconnected += o.sender_disconnected;
        self.chatload_behind += o.chatload_behind;
        self.unsendable += o.unsendable;
    }

    /// The non-zero reasons, in words, e.g. "sender never connected 12, chatload behind 3".
    pub fn describe(&self) -> String {
        [
            ("sender never connected", self.sender_never_connected),
            ("sender disconnected", self.sender_disconnected),
            ("chatload behind", self.chatload_behind),
            ("unsendable", self.unsendable),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{what} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

impl Accounting {
    pub(super) fn build(c: &Counters, lost: u64, in_flight: u64, unverified: u64) -> Self {
        Accounting {
            sent: c.deliveries_owed.saturating_sub(c.withdrawn),
            messages_scheduled: c.messages_scheduled,
            messages_sent: c.messages_sent,
            acked: c.acked,
            unacknowledged: c.unacknowledged,
            delivered: c.delivered,
            lost: lost + c.delivered_late,
            delivered_late: c.delivered_late,
            in_flight,
            unverified,
            duplicated: c.duplicates,
            reordered: c.reordered,
            receipts: c.receipts,
            late_sends: c.late_sends,
            not_sent: c.not_sent,
            not_sent_reasons: NotSentReasons {
                sender_never_connected: c.not_sent_never_connected,
                sender_disconnected: c.not_sent_disconnected,
                chatload_behind: c.not_sent_behind,
                unsendable: c.not_sent_unsendable,
            },
            refused: c.refused,
            unexpected: c.unexpected,
            earlier_runs: c.earlier_run,
            retransmitted: c.retransmitted,
            failed: c.failed,
        }
    }

    /// Whether `sent = delivered + lost + in_flight + unverified + failed`.
    pub fn balances(&self) -> bool {
        self.sent == self.delivered + self.lost + self.in_flight + self.unverified + self.failed
    }

    /// Whether every scheduled message is sent or not sent with a reason.
    pub fn schedule_balances(&self) -> bool {
        self.messages_scheduled == self.messages_sent + self.not_sent
    }

    /// Adds another run's (a segment's) accounting.
    pub fn add(&mut self, b: &Accounting) {
        self.sent += b.sent;
        self.messages_scheduled += b.messages_scheduled;
        self.messages_sent += b.messages_sent;
        self.acked += b.acked;
        self.unacknowledged += b.unacknowledged;
        self.delivered += b.delivered;
        self.lost += b.lost;
        self.delivered_late += b.delivered_late;
        self.in_flight += b.in_flight;
        self.unverified += b.unverified;
        self.duplicated += b.duplicated;
        self.reordered += b.reordered;
        self.receipts += b.receipts;
        self.late_sends += b.late_sends;
        self.not_sent += b.not_sent;
        self.not_sent_reasons.add(&b.not_sent_reasons);
        self.refused += b.refused;
        self.unexpected += b.unexpected;
        self.earlier_runs += b.earlier_runs;
        self.retransmitted += b.retransmitted;
        self.failed += b.failed;
    }
}

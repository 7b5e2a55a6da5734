//! The latency metrics chatload measures, each with its one spelling: the list that
//! threshold rules (`scenario`), recorders (`metrics`) and every report read, so a metric is
//! named in one place. A leaf: it knows names and the order reports show them in, nothing of
//! recording.

use serde::Serialize;

/// Latency metrics, each an HdrHistogram in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Intended send time → server ack.
    Send,
    /// Actual send time → server ack (the raw service time).
    SendService,
    /// Intended send time → recipient receives (recipient online when it was sent).
    Delivery,
    /// Actual send time → recipient receives.
    DeliveryService,
    /// Intended send time → a recipient who was offline at send time receives it.
    DeliveryOffline,
    /// Intended send time → a delivery that arrived after its deadline (counted lost).
    DeliveryLate,
    /// Intended send time → the last online group member receives it.
    Fanout,
    /// Intended send time → the delivered receipt reaches the sender.
    Receipt,
    /// Connect start → hello acknowledged.
    Connect,
    /// How far behind its schedule a send went out.
    SendLag,
    /// How long a frame waited on the client's machine, from its arrival (the kernel's stamp)
    /// until chatload read it: the client's own delay, kept out of every other latency.
    ReadLag,
    /// A reconnect storm dropped the connection → it was back (hello acknowledged).
    Reconnect,
    /// Business API: intended send → `sent` status webhook received.
    StatusSent,
    /// Business API: intended send → `delivered` status webhook received.
    Status,
    /// Business API: intended send → `read` status webhook received (includes reading time).
    StatusRead,
    /// A consumer's message to a business: intended send → inbound webhook received.
    Inbound,
    /// A read receipt: the reader's read → the receipt reaches the sender.
    ReadReceipt,
    /// Typing and presence: intended → seen by the recipient.
    Signal,
    /// A member opens a group after a mention-all storm → its recent history has arrived.
    History,
}

impl Metric {
    pub const ALL: [Metric; 19] = [
        Metric::Send,
        Metric::SendService,
        Metric::Delivery,
        Metric::DeliveryService,
        Metric::DeliveryOffline,
        Metric::DeliveryLate,
        Metric::Fanout,
        Metric::Receipt,
        Metric::Connect,
        Metric::SendLag,
        Metric::ReadLag,
        Metric::Reconnect,
        Metric::StatusSent,
        Metric::Status,
        Metric::StatusRead,
        Metric::Inbound,
        Metric::ReadReceipt,
        Metric::Signal,
        Metric::History,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Metric::Send => "send",
            Metric::SendService => "send_service",
            Metric::Delivery => "delivery",
            Metric::DeliveryService => "delivery_service",
            Metric::DeliveryOffline => "delivery_offline",
            Metric::DeliveryLate => "delivery_late",
            Metric::Fanout => "fanout",
            Metric::Receipt => "receipt",
            Metric::Connect => "connect",
            Metric::SendLag => "send_lag",
            Metric::ReadLag => "read_lag",
            Metric::Reconnect => "reconnect",
            Metric::StatusSent => "status_sent",
            Metric::Status => "status",
            Metric::StatusRead => "status_read",
            Metric::Inbound => "inbound",
            Metric::ReadReceipt => "read_receipt",
            Metric::Signal => "signal",
            Metric::History => "history",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The order the console table shows metrics in (the rest stay in summary.json).
pub const CONSOLE_ORDER: &[Metric] = &[
    Metric::Send,
    Metric::Delivery,
    Metric::DeliveryOffline,
    Metric::DeliveryLate,
    Metric::Fanout,
    Metric::Receipt,
    Metric::Connect,
    Metric::SendLag,
    Metric::ReadLag,
    Metric::Reconnect,
    Metric::ReadReceipt,
    Metric::Signal,
    Metric::StatusSent,
    Metric::Status,
    Metric::StatusRead,
    Metric::Inbound,
];

/// The order report.html shows metrics over time and in the spectrum.
pub const CHART_ORDER: &[Metric] = &[
    Metric::Delivery,
    Metric::Send,
    Metric::Fanout,
    Metric::Receipt,
    Metric::ReadReceipt,
    Metric::Status,
    Metric::Inbound,
    Metric::Signal,
    Metric::History,
    Metric::DeliveryOffline,
    Metric::DeliveryLate,
    Metric::Connect,
    Metric::Reconnect,
    Metric::SendLag,
    Metric::ReadLag,
];

//! The names of what chatload measures: latency metrics, counters and error kinds. Shared
//! by recorders, reports and thresholds so a name is spelled once.

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
    /// Intended send time → the last online group member receives it.
    Fanout,
    /// Intended send time → the delivered receipt reaches the sender.
    Receipt,
    /// Connect start → hello acknowledged.
    Connect,
    /// How far behind its schedule a send went out.
    SendLag,
    /// A reconnect storm dropped the connection → it was back (hello acknowledged).
    Reconnect,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Send,
        Metric::SendService,
        Metric::Delivery,
        Metric::DeliveryService,
        Metric::DeliveryOffline,
        Metric::Fanout,
        Metric::Receipt,
        Metric::Connect,
        Metric::SendLag,
        Metric::Reconnect,
    ];
    pub const COUNT: usize = Self::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Metric::Send => "send",
            Metric::SendService => "send_service",
            Metric::Delivery => "delivery",
            Metric::DeliveryService => "delivery_service",
            Metric::DeliveryOffline => "delivery_offline",
            Metric::Fanout => "fanout",
            Metric::Receipt => "receipt",
            Metric::Connect => "connect",
            Metric::SendLag => "send_lag",
            Metric::Reconnect => "reconnect",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Event counters kept per pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages written to the target.
    pub messages_sent: u64,
    /// Deliveries owed: one per recipient of every sent message.
    pub deliveries_owed: u64,
    /// Messages the server acknowledged.
    pub acked: u64,
    /// First deliveries seen (each owed delivery at most once).
    pub delivered: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub receipts: u64,
    /// Sends that went out more than `LATE_SEND_US` behind schedule.
    pub late_sends: u64,
    /// Scheduled messages never sent (the sender was disconnected and its queue full).
    pub not_sent: u64,
    /// Deliveries for messages chatload never sent or to the wrong user.
    pub unexpected: u64,
    /// Connections a reconnect storm dropped, those that came back, and those that gave up.
    pub dropped_connections: u64,
    pub reconnects: u64,
    pub gave_up: u64,
    /// Sends written again after a reconnect because their ack never came.
    pub retransmitted: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.messages_sent += o.messages_sent;
        self.deliveries_owed += o.deliveries_owed;
        self.acked += o.acked;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.receipts += o.receipts;
        self.late_sends += o.late_sends;
        self.not_sent += o.not_sent;
        self.unexpected += o.unexpected;
        self.dropped_connections += o.dropped_connections;
        self.reconnects += o.reconnects;
        self.gave_up += o.gave_up;
        self.retransmitted += o.retransmitted;
    }
}

/// A send counts as late when it leaves this far behind its intended time.
pub const LATE_SEND_US: u64 = 10_000;

/// Kinds of errors, counted per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    ConnectRefused,
    ConnectTimeout,
    ConnectFailed,
    HelloTimeout,
    ConnectionReset,
    ConnectionClosed,
    Protocol,
    ServerError,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectFailed,
        ErrorKind::HelloTimeout,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionClosed,
        ErrorKind::Protocol,
        ErrorKind::ServerError,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::HelloTimeout => "hello_timeout",
            ErrorKind::ConnectionReset => "connection_reset",
            ErrorKind::ConnectionClosed => "connection_closed",
            ErrorKind::Protocol => "protocol",
            ErrorKind::ServerError => "server_error",
        }
    }
}

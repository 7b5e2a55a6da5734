//! The names of what chatload counts: counters and error kinds, and (from `crate::metric`)
//! the latency metrics. Shared by recorders, reports and thresholds so a name is spelled
//! once.

use serde::Serialize;

pub use crate::metric::Metric;

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $field:ident),* $(,)?) => {
        /// Event counters kept per pattern.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
        #[serde(default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $field: u64,)*
        }

        impl Counters {
            pub fn add(&mut self, o: &Counters) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

counters! {
    /// Messages the schedule (or a user's reaction, or a closed loop) produced for this
    /// process to send: each ends up in `messages_sent` or in `not_sent`.
    messages_scheduled,
    /// Messages written to the target.
    messages_sent,
    /// Deliveries owed: one per recipient of every sent message.
    deliveries_owed,
    /// Deliveries no longer owed: business messages the API refused for good.
    withdrawn,
    /// Messages the server acknowledged (for the business API: accepted with 200).
    acked,
    /// Messages written that asked for the target's confirmation and had neither it nor a
    /// refusal when the run ended (for the business API: requests that timed out or failed
    /// on every attempt, which the API may or may not have taken).
    unacknowledged,
    /// First deliveries seen within their deadline (each owed delivery at most once).
    delivered,
    /// First deliveries seen after their deadline: lost, and shown apart.
    delivered_late,
    duplicates,
    reordered,
    receipts,
    /// Sends that went out more than `LATE_SEND_US` behind schedule.
    late_sends,
    /// Scheduled messages never written to the target, in all and by reason (see
    /// [`NotSentReason`]).
    not_sent,
    not_sent_never_connected,
    not_sent_disconnected,
    not_sent_behind,
    not_sent_unsendable,
    /// Messages written and then refused by the target for good: owed to no one.
    refused,
    /// Deliveries for messages this run never sent or to the wrong user.
    unexpected,
    /// Deliveries of messages numbered before this run began: an earlier run's, kept by
    /// the target (a persistent session's queue, offline storage) and handed over now.
    earlier_run,
    /// Connections a reconnect storm dropped, those that came back, and those that gave up.
    dropped_connections,
    reconnects,
    gave_up,
    /// Sends written again after a reconnect because their ack never came.
    retransmitted,
    /// Bytes of media the messages referred to (uploaded out of band).
    media_bytes,
    /// Read receipts sent by readers, and those that reached the sender.
    reads,
    read_receipts,
    /// Reads (and replies) not planned because the reader already had `MAX_PENDING` waiting.
    reads_skipped,
    /// Typing indicators and presence updates sent, and seen by their recipients.
    typing_sent,
    typing_seen,
    presence_sent,
    presence_seen,
    heartbeats,
    /// Business API statuses received by the webhook receiver, by status.
    status_sent,
    status_delivered,
    status_read,
    status_failed,
    /// Statuses for no message chatload sent.
    unexpected_statuses,
    /// Business API refusals by code, and what the client did about them.
    throttled_130429,
    pair_limited_131056,
    outside_window_131047,
    spam_131048,
    server_errors_5xx,
    request_timeouts,
    api_retries,
    /// Accepted, then reported `failed` by status: undeliverable (131026), marketing cap
    /// (131049), messaging limit (131000). They are owed no delivery.
    failed,
    failed_131026,
    failed_131049,
    failed_limit,
    /// Late support replies sent after the window, and how many the API refused with 131047
    /// as it must; accepted ones are window violations.
    late_replies,
    window_violations,
    /// Members who opened a group after a mention-all storm, and history fetches answered.
    history_requests,
    history_received,
    /// Business API requests (first attempts of sends) and those accepted.
    api_requests,
    api_accepted,
    /// Consumer replies to business messages, and mark-read calls by businesses.
    replies,
    mark_reads,
}

/// Why a scheduled message was not written to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentReason {
    /// Its sender never had a connection during the run.
    SenderNeverConnected,
    /// Its sender had lost its connection (and the schedule ended, or its queue filled).
    SenderDisconnected,
    /// chatload fell behind: the sender's queue was full while connected, the schedule
    /// ended with it still queued, or the business client held it back to the rate tier.
    Behind,
    /// The target's protocol has no way to say it.
    Unsendable,
}

impl Counters {
    /// Counts one scheduled message that was not sent, for `reason`.
    pub fn not_sent_for(&mut self, reason: NotSentReason) {
        self.not_sent += 1;
        match reason {
            NotSentReason::SenderNeverConnected => self.not_sent_never_connected += 1,
            NotSentReason::SenderDisconnected => self.not_sent_disconnected += 1,
            NotSentReason::Behind => self.not_sent_behind += 1,
            NotSentReason::Unsendable => self.not_sent_unsendable += 1,
        }
    }
}

/// A send counts as late when it leaves this far behind its intended time.
pub const LATE_SEND_US: u64 = 10_000;

/// Kinds of errors, counted per pattern (connection-level ones under no pattern).
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
    /// The business API or the webhook receiver failed at the HTTP level.
    Http,
    /// The TLS handshake failed (untrusted certificate, wrong name, no common protocol).
    Tls,
    /// The target answered a request or an upgrade with a 4xx or a 5xx status.
    Http4xx,
    Http5xx,
    /// An MQTT broker refused: a CONNACK, SUBACK or PUBACK with a failure reason code.
    BrokerRefused,
    /// A request got no answer in time.
    RequestTimeout,
    /// An answer longer than `[target.http] max_answer`: the part past it is never read.
    AnswerTooLong,
    /// The target stopped reading: more than a bound of frames waited to be written beyond
    /// what the connection took, so the connection was given up.
    TargetNotReading,
    /// The machine chatload runs on had no more of what a connection takes (local ports to
    /// the target, file descriptors, socket memory): chatload's own limit, not the target's.
    LocalLimit,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 17] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectFailed,
        ErrorKind::HelloTimeout,
        ErrorKind::ConnectionReset,
        ErrorKind::ConnectionClosed,
        ErrorKind::Protocol,
        ErrorKind::ServerError,
        ErrorKind::Http,
        ErrorKind::Tls,
        ErrorKind::Http4xx,
        ErrorKind::Http5xx,
        ErrorKind::BrokerRefused,
        ErrorKind::RequestTimeout,
        ErrorKind::AnswerTooLong,
        ErrorKind::TargetNotReading,
        ErrorKind::LocalLimit,
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
            ErrorKind::Http => "http",
            ErrorKind::Tls => "tls",
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::BrokerRefused => "broker_refused",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::AnswerTooLong => "answer_too_long",
            ErrorKind::TargetNotReading => "target_not_reading",
            ErrorKind::LocalLimit => "local_limit",
        }
    }

    /// The kind of an HTTP status that is an error (4xx or 5xx).
    pub fn for_status(status: u16) -> ErrorKind {
        if status >= 500 {
            ErrorKind::Http5xx
        } else {
            ErrorKind::Http4xx
        }
    }
}

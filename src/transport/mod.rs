//! Transports: how a virtual user reaches the target. One [`Session`] trait, one file per
//! protocol — chatload's own WebSocket protocol (`native`), MQTT brokers (`mqtt`), any
//! WebSocket chat gateway described by frame templates (`gateway`) and any HTTP messaging
//! API (`http`) and XMPP servers (`xmpp`). A session turns what a virtual user wants to say ([`Outgoing`]) into the
//! protocol's bytes and the protocol's bytes into what happened ([`Incoming`]); the virtual
//! user keeps the schedule, the ledger and the measurements, whatever the protocol.

pub mod authority;
pub(crate) mod byte_stream;
pub mod connector;
pub mod gateway;
pub mod http;
pub mod http1;
pub mod http1_answer;
pub mod http1_pool;
pub mod http_error;
mod http_reqwest;
mod http_signal;
pub mod mqtt;
mod mqtt_session;
mod mqtt_wire;
pub mod native;
mod resolve;
pub mod source;
mod stamped_tcp;
pub mod tls;
pub mod ws_open;
pub mod xmpp;

pub use connector::Connector;
pub use stamped_tcp::waited_since;

use crate::metrics::ErrorKind;
use crate::protocol::{Media, Recipient};
use std::future::Future;

/// The most a connection may have waiting to be written beyond what its socket took; past
/// it the target has stopped reading, and the session is given up as
/// [`ErrorKind::TargetNotReading`] rather than holding ever more (the user reconnects, and
/// what the target had not confirmed is sent again).
pub const MAX_UNWRITTEN: usize = 1 << 20;

/// The session's end when `unwritten` bytes wait past [`MAX_UNWRITTEN`].
pub fn not_reading(unwritten: usize) -> Incoming {
    Incoming::Lost {
        kind: ErrorKind::TargetNotReading,
        detail: format!(
            "the target stopped reading: {unwritten} bytes waited to be written beyond what the connection took"
        ),
    }
}

/// What a virtual user says to its target.
#[derive(Debug, Clone, Copy)]
pub enum Outgoing<'a> {
    /// A chat message (`from` is the user itself).
    Message {
        id: u64,
        from: u32,
        to: Recipient,
        /// Intended and actual send time (µs on the run's clock).
        t: u64,
        s: u64,
        body: &'a str,
        media: Media,
    },
    /// "I have it": the recipient's acknowledgement of a delivery.
    Delivered(&'a Delivery),
    Read {
        id: u64,
        /// The message's sender and the business API's message id, when a business sent it.
        from: u32,
        wamid: u64,
        r: u64,
        s: u64,
    },
    Typing {
        from: u32,
        to: u32,
        r: u64,
    },
    Presence {
        from: u32,
        state: &'a str,
        s: u64,
        contacts: &'a [u32],
    },
    Heartbeat,
    History {
        group: u32,
        r: u64,
    },
}

/// A message delivered to this user, as far as the protocol tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub id: u64,
    pub from: u32,
    pub group: Option<u32>,
    /// The sender's intended and actual send times, when the frame carries them; otherwise
    /// the ledger knows the intended time.
    pub t: Option<u64>,
    pub s: Option<u64>,
    /// The server's per-recipient sequence (resume point), when it has one.
    pub seq: Option<u64>,
    /// The business API's message id of a business message (0 otherwise).
    pub wamid: u64,
}

/// What the target told a virtual user.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Message(Delivery),
    /// The target took one of our messages (ack, PUBACK, HTTP 2xx with its id).
    Accepted {
        id: u64,
    },
    /// The target refused one of our messages with this kind of error.
    Rejected {
        id: u64,
        kind: ErrorKind,
        detail: String,
    },
    Receipt {
        id: u64,
        read: bool,
        t: Option<u64>,
        r: Option<u64>,
    },
    Typing {
        from: Option<u32>,
        r: Option<u64>,
    },
    Presence {
        r: Option<u64>,
    },
    /// The server asks us to leave and come back after this many milliseconds.
    GoAway {
        after_ms: u64,
    },
    History {
        group: Option<u32>,
        r: Option<u64>,
    },
    /// The target answered with an error that ends nothing.
    ServerError(String),
    /// A request that carried no message (a signal) failed with this kind of error.
    Failed {
        kind: ErrorKind,
        detail: String,
    },
    /// A frame that could not be understood.
    Undecodable(String),
    /// The connection ended (cleanly or not).
    Lost {
        kind: ErrorKind,
        detail: String,
    },
    /// Something happened that needs no action (a write went out, a frame was ignored).
    Nothing,
}

/// What the target does with deliveries for a recipient who is not connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineDelivery {
    /// The protocol resumes a session (chatload's resume, an MQTT persistent session): a
    /// returning recipient is handed what it missed, so the end of a run can check.
    Resumed,
    /// Deliveries are pushed to a receiver that is always there (a webhook).
    Pushed,
    /// Nothing in the protocol says what a returning recipient gets.
    NotResumed,
}

/// Why a session could not be set up, by kind, with the underlying cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct ConnectError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl ConnectError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        ConnectError {
            kind,
            detail: detail.into(),
        }
    }

    /// An I/O failure on the way to a session, with its kind read from the error.
    pub fn io(e: std::io::Error) -> Self {
        ConnectError::new(connector::classify_io(&e), e.to_string())
    }
}

/// One virtual user's live connection to the target.
pub trait Session: Send {
    /// Queues one outgoing event; false when this protocol has no way to say it (it is then
    /// not counted as said).
    fn push(&mut self, out: Outgoing<'_>) -> bool;

    /// Writes what is queued and waits for what the target says next. Cancel-safe: nothing
    /// is lost when the future is dropped before it completes.
    fn next(&mut self) -> impl Future<Output = Incoming> + Send;

    /// Writes what is queued and closes; the caller bounds it with a timeout.
    fn close(&mut self) -> impl Future<Output = ()> + Send;

    /// Whether the target confirms each message (then unconfirmed ones are sent again after
    /// a reconnect, as a messaging client's outbox does).
    fn confirms_sends(&self) -> bool;

    /// How long the frame `next` last returned had waited on this machine, from the moment
    /// its bytes arrived until chatload read it: the client's own delay, to be told apart
    /// from the target's. `None` where the transport cannot tell.
    fn waited(&self) -> Option<std::time::Duration> {
        None
    }
}

/// A session of whichever protocol the scenario's target speaks.
pub enum AnySession {
    Native(native::NativeSession),
    Mqtt(Box<mqtt::MqttSession>),
    Gateway(gateway::GatewaySession),
    Http(http::HttpSession),
    Xmpp(xmpp::XmppSession),
}

impl Session for AnySession {
    fn push(&mut self, out: Outgoing<'_>) -> bool {
        match self {
            AnySession::Native(s) => s.push(out),
            AnySession::Mqtt(s) => s.push(out),
            AnySession::Gateway(s) => s.push(out),
            AnySession::Http(s) => s.push(out),
            AnySession::Xmpp(s) => s.push(out),
        }
    }

    async fn next(&mut self) -> Incoming {
        match self {
            AnySession::Native(s) => s.next().await,
            AnySession::Mqtt(s) => s.next().await,
            AnySession::Gateway(s) => s.next().await,
            // Boxed: the HTTP wait is ~1.7 KB and would size every user's future, whatever
            // its protocol, for the whole run; one allocation per answer costs far less.
            AnySession::Http(s) => Box::pin(s.next()).await,
            AnySession::Xmpp(s) => s.next().await,
        }
    }

    async fn close(&mut self) {
        match self {
            AnySession::Native(s) => s.close().await,
            AnySession::Mqtt(s) => s.close().await,
            AnySession::Gateway(s) => s.close().await,
            AnySession::Http(s) => s.close().await,
            AnySession::Xmpp(s) => s.close().await,
        }
    }

    fn confirms_sends(&self) -> bool {
        match self {
            AnySession::Native(s) => s.confirms_sends(),
            AnySession::Mqtt(s) => s.confirms_sends(),
            AnySession::Gateway(s) => s.confirms_sends(),
            AnySession::Http(s) => s.confirms_sends(),
            AnySession::Xmpp(s) => s.confirms_sends(),
        }
    }

    fn waited(&self) -> Option<std::time::Duration> {
        match self {
            AnySession::Native(s) => s.waited(),
            AnySession::Mqtt(s) => s.waited(),
            AnySession::Gateway(s) => s.waited(),
            AnySession::Http(s) => s.waited(),
            AnySession::Xmpp(s) => s.waited(),
        }
    }
}
#[cfg(test)]
mod tests {
    /// A session lives inline in every user's future, whatever the protocol: a WebSocket
    /// stream held inline (1.4 KB with its TLS state) once cost 1.3 KiB per connected user
    /// (benches/connections.sh, 19,000 users: 7.4 → 8.7 KiB).
    #[test]
    fn a_session_stays_small_in_every_users_future() {
        let size = std::mem::size_of::<super::AnySession>();
        assert!(size <= 512, "AnySession is {size} bytes");
        assert!(std::mem::size_of::<super::native::NativeSession>() <= 128);
    }
}

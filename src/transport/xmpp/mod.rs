//! XMPP (RFC 6120/6121) over TCP, or over WebSocket (RFC 7395, `framing`): each virtual user is one client stream with its own
//! account, resource and rooms. A one-to-one message is a `<message type='chat'>` whose
//! `id` and a `<x xmlns='urn:chatload:0'>` element carry chatload's id and times, so
//! latency is end to end; delivery receipts are XEP-0184, read markers XEP-0333, typing
//! XEP-0085 chat states, presence is directed to contacts, groups are MUC rooms
//! (XEP-0045), XEP-0198 acks confirm each message when the server offers them, and a
//! stream cut without a goodbye is resumed by the next connection (XEP-0198).
//!
//! The protocol layer is chatload's own, on quick-xml: tokio-xmpp (xmpp-rs) brings a DNS
//! resolver, a DOM per stanza and its own reconnect logic, and cannot bind the local
//! addresses chatload spreads connections over; what a load client needs of XMPP is the
//! log-in and a few stanza shapes, read here with bounded buffers.
//! Owns the XMPP session; the server and its accounts are the user's.

mod framing;
mod login;
pub mod sasl;
mod session;
mod steps;
pub mod xml;

pub use session::XmppSession;

use super::ConnectError;
use super::authority::Authority;
use super::byte_stream::ByteStream;
use super::source::SourcePool;
use super::tls::TlsContext;
use crate::scenario::target::XmppTarget;
use crate::scenario::template::{Slot, Value};
use crate::secrets::Credentials;
use rustc_hash::FxHashMap;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Stanzas a log-in may see before the session takes over (room presences, errors).
const EARLY_LIMIT: usize = 1024;

/// The namespaces chatload speaks.
pub mod ns {
    pub const STREAM: &str = "http://etherx.jabber.org/streams";
    pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
    pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
    pub const SM: &str = "urn:xmpp:sm:3";
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
    pub const RECEIPTS: &str = "urn:xmpp:receipts";
    pub const MARKERS: &str = "urn:xmpp:chat-markers:0";
    pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
    pub const PING: &str = "urn:xmpp:ping";
    /// chatload's own element: its message id and times.
    pub const CHATLOAD: &str = "urn:chatload:0";
}

/// A plain or encrypted stream.
pub enum Conn {
    Tcp(ByteStream),
    /// RFC 7395, over ws:// or wss://.
    Ws(Box<framing::WsStream>),
}

impl Conn {
    /// The arrival stamps of what this stream reads, in a cell the session keeps once the
    /// stream is split (see `StampedTcp::share_stamps`).
    pub fn share_stamps(&mut self) -> Option<Arc<AtomicU64>> {
        match self {
            Conn::Tcp(s) => Some(s.share_stamps()),
            Conn::Ws(s) => s.share_stamps(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Ws(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The host of a `ws://` or `wss://` URL (XMPP over WebSocket).
fn websocket_host(url: &str) -> Option<String> {
    let url = url.trim();
    (url.starts_with("ws://") || url.starts_with("wss://"))
        .then(|| Authority::of(url).map(|a| a.host))
        .flatten()
}

/// Host and port of an `xmpp://host[:port]` URL (5222 by default).
pub fn parse_url(url: &str) -> Option<Authority> {
    url.trim()
        .starts_with("xmpp://")
        .then(|| Authority::of(url))
        .flatten()
}

/// Everything needed to open one user's XMPP stream.
pub struct XmppSetup {
    pub target: Arc<XmppTarget>,
    /// `host:port` to connect to.
    pub address: String,
    /// The ws:// or wss:// URL, for XMPP over WebSocket (RFC 7395).
    pub websocket: Option<String>,
    /// The part after @ in every user's JID.
    pub domain: String,
    /// The MUC service holding the rooms.
    pub muc: String,
    pub tls: TlsContext,
    pub credentials: Arc<Credentials>,
    pub sources: SourcePool,
    /// Streams cut without a goodbye, by user: the next connection resumes them.
    resumptions: Mutex<FxHashMap<u32, Resumption>>,
}

/// What a stream cut without a goodbye leaves for the next connection to resume it by
/// (XEP-0198): its id, how many of the server's stanzas we handled, and ours not yet acked.
#[derive(Debug, Clone)]
pub struct Resumption {
    pub id: String,
    pub handled: u32,
    /// The server's last ack of our stanzas, and ours after it (chatload's id for messages).
    pub acked: u32,
    pub unacked: std::collections::VecDeque<Option<u64>>,
}

impl std::fmt::Debug for XmppSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XmppSetup({}, {})", self.address, self.domain)
    }
}

impl XmppSetup {
    pub fn new(
        target: Arc<XmppTarget>,
        url: &str,
        tls: TlsContext,
        credentials: Arc<Credentials>,
        sources: SourcePool,
    ) -> Option<Self> {
        let websocket = websocket_host(url).map(|h| (h, url.trim().to_string()));
        let server = match &websocket {
            Some((h, _)) => Authority {
                host: h.clone(),
                port: 0,
            },
            None => parse_url(url)?,
        };
        let host = &server.host;
        let domain = target.domain.clone().unwrap_or_else(|| host.clone());
        let muc = target
            .muc
            .clone()
            .unwrap_or_else(|| format!("conference.{domain}"));
        let address = server.address();
        Some(XmppSetup {
            target,
            address,
            websocket: websocket.map(|(_, u)| u),
            domain,
            muc,
            tls,
            credentials,
            sources,
            resumptions: Mutex::new(FxHashMap::default()),
        })
    }

    /// Keeps what a cut stream needs to be resumed (its last state wins).
    pub fn keep_resumption(&self, user: u32, r: Resumption) {
        if let Ok(mut m) = self.resumptions.lock() {
            m.insert(user, r);
        }
    }

    pub fn take_resumption(&self, user: u32) -> Option<Resumption> {
        self.resumptions.lock().ok()?.remove(&user)
    }

    /// `user`'s local part and password.
    pub fn account(&self, user: u32) -> (String, String) {
        let value = |s: Slot| match s {
            Slot::User | Slot::From | Slot::To => Value::Number(u64::from(user)),
            Slot::Password => Value::secret(self.credentials.password_of(user)),
            Slot::UserId | Slot::ToId | Slot::GroupId | Slot::ChatId => Value::Empty,
            Slot::Captured(_) => Value::Empty,
            Slot::Token => Value::secret(self.credentials.token_of(user)),
            Slot::Username => Value::secret(self.credentials.username_of(user)),
            _ => Value::Empty,
        };
        (
            self.target.username.render(false, value),
            self.target.password.render(false, value),
        )
    }

    /// `user`'s bare JID.
    pub fn jid(&self, user: u32) -> String {
        let local = self.target.username.render(false, |s| match s {
            Slot::User | Slot::From | Slot::To => Value::Number(u64::from(user)),
            _ => Value::Empty,
        });
        format!("{local}@{}", self.domain)
    }

    /// Group `g`'s room.
    pub fn room_jid(&self, g: u32) -> String {
        let room = self.target.room.render(false, |s| match s {
            Slot::Group => Value::Number(u64::from(g)),
            _ => Value::Empty,
        });
        format!("{room}@{}", self.muc)
    }

    /// Creates `user`'s account (in-band registration) if it does not exist.
    pub async fn register(&self, user: u32, timeout: Duration) -> Result<(), ConnectError> {
        let source = self.sources.for_user(user);
        let steps = steps::Steps::default();
        match tokio::time::timeout(timeout, login::register(self, user, source, &steps)).await {
            Ok(r) => r,
            Err(_) => Err(steps.timed_out(timeout)),
        }
    }

    /// Logs `user` in and joins its groups' rooms.
    pub async fn connect(
        self: &Arc<Self>,
        user: u32,
        groups: &[u32],
        timeout: Duration,
    ) -> Result<XmppSession, ConnectError> {
        let source = self.sources.for_user(user);
        let steps = steps::Steps::default();
        let logging_in = login::login(self, user, groups, source, &steps);
        match tokio::time::timeout(timeout, logging_in).await {
            Ok(Ok(done)) => Ok(XmppSession::new(self.clone(), user, done)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(steps.timed_out(timeout)),
        }
    }
}

/// The number at the end of a JID's local part or a room nick ("u17" → 17).
pub fn trailing_number(text: &str) -> Option<u32> {
    let digits = text.len() - text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    text[text.len() - digits..].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_numbers() {
        assert_eq!(
            parse_url("xmpp://127.0.0.1:25222").map(|a| a.address()),
            Some("127.0.0.1:25222".into())
        );
        assert_eq!(
            parse_url("xmpp://chat.example").map(|a| a.address()),
            Some("chat.example:5222".into())
        );
        assert_eq!(
            parse_url("xmpp://[::1]:5223").map(|a| a.address()),
            Some("[::1]:5223".into())
        );
        assert_eq!(parse_url("ws://h/x"), None);
        assert_eq!(trailing_number("u17"), Some(17));
        assert_eq!(trailing_number("user-0042"), Some(42));
        assert_eq!(trailing_number("alice"), None);
    }
}

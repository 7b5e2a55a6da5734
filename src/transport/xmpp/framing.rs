//! XMPP over WebSocket (RFC 7395) as a byte stream, so the log-in and the session speak to
//! it exactly as to TCP: each received text message (one stanza, or the framing's `<open/>`
//! and `<close/>`) is handed on as stream bytes, with `<open/>` read as a stream header and
//! `<close/>` as the end of the stream; what is written is cut into whole stanzas, one
//! WebSocket message each, the stream header and end becoming `<open/>` and `<close/>`.
//! Owns that translation; the WebSocket upgrade is `transport::ws_open`'s.

use super::xml::{Frame, cut, esc};
use crate::transport::ws_open::Socket;
use bytes::{Buf, BytesMut};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// Bytes written and not yet cut into stanzas beyond which a write is refused.
const MAX_UNSENT: usize = 1 << 20;

pub struct WsStream {
    ws: Socket,
    /// wss://: the stream is encrypted (PLAIN may be used).
    pub secure: bool,
    read: BytesMut,
    write: BytesMut,
    eof: bool,
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::ConnectionReset.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

impl WsStream {
    pub fn share_stamps(&mut self) -> Option<std::sync::Arc<std::sync::atomic::AtomicU64>> {
        crate::transport::ws_open::share_stamps(&mut self.ws)
    }

    pub fn new(ws: Socket, secure: bool) -> Self {
        WsStream {
            ws,
            secure,
            read: BytesMut::new(),
            write: BytesMut::new(),
            eof: false,
        }
    }

    /// One received text as stream bytes.
    fn take_in(&mut self, text: &str) {
        let t = text.trim_start();
        let framing = t.contains(FRAMING);
        if framing && t.starts_with("<open") {
            self.read.extend_from_slice(
                b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            );
        } else if framing && t.starts_with("<close") {
            self.read.extend_from_slice(b"</stream:stream>");
        } else {
            self.read.extend_from_slice(text.as_bytes());
        }
    }
}

/// RFC 7395 §3.3.3: every stanza names its namespace (over TCP the stream's default
/// `jabber:client` covers it).
fn qualified(raw: &str, name: &str, unqualified: bool) -> String {
    let raw = raw.trim();
    if unqualified && matches!(name, "message" | "presence" | "iq") {
        let at = 1 + name.len();
        if raw.len() >= at && raw.is_char_boundary(at) {
            return format!("{} xmlns='jabber:client'{}", &raw[..at], &raw[at..]);
        }
    }
    raw.to_string()
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = buf.remaining().min(this.read.len());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                Some(Ok(Message::Text(t))) => this.take_in(t.as_str()),
                Some(Ok(Message::Binary(b))) => match std::str::from_utf8(&b) {
                    Ok(t) => this.take_in(t),
                    Err(_) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a binary WebSocket message that is not UTF-8",
                        )));
                    }
                },
                Some(Ok(_)) => {}
            }
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write.len() + buf.len() > MAX_UNSENT {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more than 1 MiB written that is not whole stanzas",
            )));
        }
        this.write.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Whitespace keep-alives have no place in RFC 7395 (WebSocket pings do that).
            let blank = this
                .write
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            this.write.advance(blank);
            let (frame, used) = match cut(&this.write) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidInput, e))),
            };
            let text = match frame {
                Frame::Header(h) => format!(
                    "<open xmlns='{FRAMING}' to='{}' version='1.0'/>",
                    esc(h.attr("to").unwrap_or(""))
                ),
                Frame::End => format!("<close xmlns='{FRAMING}'/>"),
                Frame::Stanza(e) => {
                    let raw = String::from_utf8_lossy(&this.write[..used]);
                    qualified(&raw, &e.name, e.ns.is_empty())
                }
            };
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(io_error)?;
            Pin::new(&mut this.ws)
                .start_send(Message::text(text))
                .map_err(io_error)?;
            this.write.advance(used);
        }
        Pin::new(&mut this.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().ws)
            .poll_close(cx)
            .map_err(io_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_name_their_namespace() {
        assert_eq!(
            qualified("<presence/>", "presence", true),
            "<presence xmlns='jabber:client'/>"
        );
        assert_eq!(
            qualified("<iq type='set' id='b'><bind/></iq>", "iq", true),
            "<iq xmlns='jabber:client' type='set' id='b'><bind/></iq>"
        );
        assert_eq!(
            qualified("<r xmlns='urn:xmpp:sm:3'/>", "r", false),
            "<r xmlns='urn:xmpp:sm:3'/>"
        );
    }
}

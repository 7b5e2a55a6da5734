//! The chatload WebSocket message codec, the one thing the client side and the embedded
//! server share. JSON text frames with an `op` field (see the README's protocol section).
//! Owns encoding (`frame_text` spells the JSON) and decoding (`flat` reads the builders' own
//! shape fast, serde_json everything else), the message-id layout (`id`), reading ids and
//! people back from a target's frames (`correlation`), keyed randomness (`keyed`), the
//! WebSocket read-and-write loop both sides use (`wsio`), the WebSocket stream under it
//! (`ws_stream`, both sides), the listening socket both sides serve on (`listen`) and the
//! descriptor table both grow before connections come (`fd_table`); knows nothing of
//! schedules, measurement or the server's routing.
//!
//! Client → server: `hello`, `send`, `ack`, `read`, `typing`, `presence`, `group`, `ping`.
//! Server → client: `hello_ok`, `sent`, `msg`, `receipt`, `typing`, `presence`, `group_ok`,
//! `goaway`, `error`, `pong`.
//!
//! Businesses appear on this side as user ids from [`BUSINESS_BASE`] up: a consumer writes to
//! one as to any user, and business messages arrive as `msg` frames from such an id carrying
//! the business API's message id in `w`, which the consumer echoes in its `ack` and `read`.
//! `t` (intended send time) and `s` (actual send time) are the client's own clock in
//! microseconds; the server echoes them untouched so the client needs no lookup to measure.

pub mod correlation;
pub mod fd_table;
mod flat;
mod frame_text;
pub mod id;
pub mod keyed;
pub mod listen;
mod server_counters;
pub mod ws_stream;
pub mod wsio;

pub use server_counters::ServerCounters;

use frame_text::FrameText;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::OnceLock;

/// Any frame, decoded into one flat shape; which fields are set depends on `op`.
#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Frame<'a> {
    #[serde(borrow)]
    pub op: Cow<'a, str>,
    pub user: Option<u32>,
    pub last_seq: Option<u64>,
    /// `hello`: which run the session belongs to (see [`hello`]).
    pub run: Option<u64>,
    pub seq: Option<u64>,
    pub id: Option<u64>,
    pub from: Option<u32>,
    pub to: Option<u32>,
    pub group: Option<u32>,
    pub by: Option<u32>,
    pub t: Option<u64>,
    pub s: Option<u64>,
    #[serde(borrow)]
    pub body: Option<Cow<'a, str>>,
    pub members: Option<Vec<u32>>,
    pub code: Option<u32>,
    #[serde(borrow)]
    pub message: Option<Cow<'a, str>>,
    /// The business API's message id (wamid number) of a business message.
    pub w: Option<u64>,
    /// The intended time of a read, typing or presence signal (client clock, µs).
    pub r: Option<u64>,
    #[serde(borrow)]
    pub state: Option<Cow<'a, str>>,
    /// Message type other than text: image, voice, video, other, template, interactive.
    #[serde(borrow)]
    pub k: Option<Cow<'a, str>>,
    /// Size in bytes of the media a message refers to (uploaded out of band).
    pub n: Option<u64>,
    /// `goaway`: come back after this many milliseconds.
    pub after_ms: Option<u64>,
}

/// User ids from here up are business phone numbers (business `b` is `BUSINESS_BASE + b`).
pub const BUSINESS_BASE: u32 = 0xF000_0000;

pub fn is_business(user: u32) -> bool {
    user >= BUSINESS_BASE && user != u32::MAX
}

/// Why a frame could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct DecodeError(String);

pub fn decode(text: &str) -> Result<Frame<'_>, DecodeError> {
    if let Some(frame) = flat::read(text) {
        return Ok(frame);
    }
    serde_json::from_str(text).map_err(|e| DecodeError(e.to_string()))
}

/// A body of `len` filler characters, borrowed from one shared buffer (no allocation).
pub fn filler_body(len: usize) -> &'static str {
    static FILLER: OnceLock<String> = OnceLock::new();
    let all = FILLER.get_or_init(|| "x".repeat(MAX_BODY));
    &all[..len.min(MAX_BODY)]
}

/// The largest body chatload generates.
pub const MAX_BODY: usize = 1 << 20;

/// The longest frame a side of this protocol reads from the other: the largest body and
/// room for its envelope (ids, times, the op; a few hundred bytes). A frame's length comes
/// first, so a longer one is refused before any of it is held; each connection can then
/// make its reader hold at most this much.
pub const MAX_FRAME: usize = MAX_BODY + 16 * 1024;

/// A session's greeting. `run` tells one run's sessions from another's: message ids and
/// resume points start afresh in every run, so a server that outlives a run (`chatload
/// serve` under a capacity search) must not take a new run's first messages for
/// retransmissions, nor hand it what an earlier run left queued.
pub fn hello(user: u32, last_seq: u64, run: u64) -> String {
    FrameText::new("hello", 0)
        .num("user", user)
        .num("last_seq", last_seq)
        .num("run", run)
        .end()
}

pub fn hello_ok(user: u32, resumed_after: u64) -> String {
    FrameText::new("hello_ok", 0)
        .num("user", user)
        .num("last_seq", resumed_after)
        .end()
}

/// A message to one user (`Recipient::User`) or to a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    User(u32),
    Group(u32),
    /// Business number `b` (a consumer writing to a business).
    Business(u32),
}

/// What a message carries besides its text: a media reference of `bytes` (the bytes
/// themselves go to a media store out of band, as in WhatsApp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Media {
    pub kind: MediaKind,
    pub bytes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum MediaKind {
    #[default]
    Text,
    Image,
    Voice,
    Video,
    Other,
}

impl MediaKind {
    pub const ALL: [MediaKind; 5] = [
        MediaKind::Text,
        MediaKind::Image,
        MediaKind::Voice,
        MediaKind::Video,
        MediaKind::Other,
    ];
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Text => "text",
            MediaKind::Image => "image",
            MediaKind::Voice => "voice",
            MediaKind::Video => "video",
            MediaKind::Other => "other",
        }
    }
}

pub fn send(id: u64, to: Recipient, intended_us: u64, sent_us: u64, body: &str) -> String {
    send_media(id, to, intended_us, sent_us, body, Media::default())
}

pub fn send_media(
    id: u64,
    to: Recipient,
    intended_us: u64,
    sent_us: u64,
    body: &str,
    media: Media,
) -> String {
    let out = FrameText::new("send", 48 + body.len()).num("id", id);
    let out = match to {
        Recipient::User(u) => out.num("to", u),
        Recipient::Group(g) => out.num("group", g),
        Recipient::Business(b) => out.num("to", BUSINESS_BASE + b),
    };
    let mut out = out.num("t", intended_us).num("s", sent_us);
    if media.kind != MediaKind::Text {
        out = out.text("k", media.kind.name()).num("n", media.bytes);
    }
    out.text("body", body).end()
}

pub fn sent(id: u64, intended_us: u64, sent_us: u64) -> String {
    FrameText::new("sent", 0)
        .num("id", id)
        .num("t", intended_us)
        .num("s", sent_us)
        .end()
}

/// A delivery as the server writes it to a recipient.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub seq: u64,
    pub id: u64,
    pub from: u32,
    pub to: u32,
    pub group: Option<u32>,
    pub intended_us: u64,
    pub sent_us: u64,
    pub body: &'a str,
    /// The business API's message id, for business messages (0: none).
    pub wamid: u64,
    /// Message type other than text, echoed from the send (with its media size).
    pub kind: Option<&'a str>,
    pub media_bytes: u64,
}

pub fn msg(d: &Delivery<'_>) -> String {
    let mut out = FrameText::new("msg", 64 + d.body.len())
        .num("seq", d.seq)
        .num("id", d.id)
        .num("from", d.from)
        .num("to", d.to);
    if let Some(g) = d.group {
        out = out.num("group", g);
    }
    if d.wamid != 0 {
        out = out.num("w", d.wamid);
    }
    if let Some(k) = d.kind {
        out = out.text("k", k).num("n", d.media_bytes);
    }
    out.num("t", d.intended_us)
        .num("s", d.sent_us)
        .text("body", d.body)
        .end()
}

pub fn ack(seq: u64, id: u64, from: u32, intended_us: u64, sent_us: u64, wamid: u64) -> String {
    let out = FrameText::new("ack", 16)
        .num("seq", seq)
        .num("id", id)
        .num("from", from)
        .num("t", intended_us)
        .num("s", sent_us);
    if wamid != 0 {
        return out.num("w", wamid).end();
    }
    out.end()
}

pub fn receipt(id: u64, by: u32, intended_us: u64, sent_us: u64) -> String {
    FrameText::new("receipt", 32)
        .num("id", id)
        .num("by", by)
        .text("state", "delivered")
        .num("t", intended_us)
        .num("s", sent_us)
        .end()
}

/// The reader `by` read message `id` from `from`; `read_us` is when the read was meant to
/// happen (the reader's think time already over), so the receipt's transit can be measured.
pub fn read(id: u64, from: u32, wamid: u64, read_us: u64, sent_us: u64) -> String {
    FrameText::new("read", 16)
        .num("id", id)
        .num("from", from)
        .num("w", wamid)
        .num("r", read_us)
        .num("s", sent_us)
        .end()
}

pub fn read_receipt(id: u64, by: u32, read_us: u64) -> String {
    FrameText::new("receipt", 16)
        .num("id", id)
        .num("by", by)
        .text("state", "read")
        .num("r", read_us)
        .end()
}

/// Client → server: `to` sees this user typing; server → client: `from` is typing.
pub fn typing(to: u32, intended_us: u64) -> String {
    FrameText::new("typing", 0)
        .num("to", to)
        .num("r", intended_us)
        .end()
}

pub fn typing_seen(from: u32, intended_us: u64) -> String {
    FrameText::new("typing", 0)
        .num("from", from)
        .num("r", intended_us)
        .end()
}

/// Client → server: this user's presence changed; fan it out to `contacts` that are online.
pub fn presence(state: &str, intended_us: u64, contacts: &[u32]) -> String {
    FrameText::new("presence", contacts.len() * 8)
        .text("state", state)
        .num("r", intended_us)
        .ids("members", contacts)
        .end()
}

pub fn presence_seen(from: u32, state: &str, intended_us: u64) -> String {
    FrameText::new("presence", 0)
        .num("from", from)
        .text("state", state)
        .num("r", intended_us)
        .end()
}

/// Client → server: fetch group `g`'s recent history (the member opened the group).
pub fn history(group: u32, intended_us: u64) -> String {
    FrameText::new("history", 0)
        .num("group", group)
        .num("r", intended_us)
        .end()
}

/// Server → client: the last `count` messages of the group, `bytes` of them (as the body).
pub fn history_ok(group: u32, count: usize, intended_us: u64, body: &str) -> String {
    FrameText::new("history_ok", body.len())
        .num("group", group)
        .num("r", intended_us)
        .num("seq", count)
        .text("body", body)
        .end()
}

/// The server is going away: reconnect after `after_ms` (a graceful reconnect storm).
pub fn goaway(after_ms: u64) -> String {
    FrameText::new("goaway", 0).num("after_ms", after_ms).end()
}

pub fn group(id: u32, members: &[u32]) -> String {
    FrameText::new("group", members.len() * 8)
        .num("group", id)
        .ids("members", members)
        .end()
}

pub fn group_ok(id: u32) -> String {
    FrameText::new("group_ok", 0).num("group", id).end()
}

pub fn error(code: u32, message: &str) -> String {
    FrameText::new("error", message.len())
        .num("code", code)
        .text("message", message)
        .end()
}

pub const PING: &str = r#"{"op":"ping"}"#;
pub const PONG: &str = r#"{"op":"pong"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = send(7, Recipient::Group(3), 100, 105, filler_body(5));
        let d = decode(&f).unwrap();
        assert_eq!(
            (d.op.as_ref(), d.id, d.group, d.to, d.t, d.s),
            ("send", Some(7), Some(3), None, Some(100), Some(105))
        );
        assert_eq!(d.body.as_deref(), Some("xxxxx"));
        let m = msg(&Delivery {
            seq: 9,
            id: 7,
            from: 1,
            to: 2,
            group: None,
            intended_us: 1,
            sent_us: 2,
            body: "a\"b",
            wamid: 0,
            kind: None,
            media_bytes: 0,
        });
        let d = decode(&m).unwrap();
        assert_eq!(d.body.as_deref(), Some("a\"b"));
        assert_eq!(d.seq, Some(9));
        let text = group(4, &[1, 2, 3]);
        let g = decode(&text).unwrap();
        assert_eq!(g.members, Some(vec![1, 2, 3]));
        assert!(decode("{not json").is_err());
        assert!(decode(r#"{"op":"send","id":"seven"}"#).is_err());
    }
}

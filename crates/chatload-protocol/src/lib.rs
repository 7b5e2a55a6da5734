//! The chatload WebSocket message codec, the one thing the client side and the embedded
//! server share. JSON text frames with an `op` field (see the README's protocol section).
//! Owns encoding and decoding, the message-id layout (`id`), reading ids and people back from
//! a target's frames (`correlation`), keyed randomness
//! (`keyed`), the WebSocket read-and-write loop both sides use (`wsio`) and the listening
//! socket both sides serve on (`listen`); knows nothing of
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
pub mod id;
pub mod keyed;
pub mod listen;
mod server_counters;
pub mod wsio;

pub use server_counters::ServerCounters;

use serde::Deserialize;
use std::borrow::Cow;
use std::fmt::Write as _;
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

fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

/// A session's greeting. `run` tells one run's sessions from another's: message ids and
/// resume points start afresh in every run, so a server that outlives a run (`chatload
/// serve` under a capacity search) must not take a new run's first messages for
/// retransmissions, nor hand it what an earlier run left queued.
pub fn hello(user: u32, last_seq: u64, run: u64) -> String {
    format!(r#"{{"op":"hello","user":{user},"last_seq":{last_seq},"run":{run}}}"#)
}

pub fn hello_ok(user: u32, resumed_after: u64) -> String {
    format!(r#"{{"op":"hello_ok","user":{user},"last_seq":{resumed_after}}}"#)
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
    let mut out = String::with_capacity(112 + body.len());
    let _ = match to {
        Recipient::User(u) => write!(
            out,
            r#"{{"op":"send","id":{id},"to":{u},"t":{intended_us},"s":{sent_us},"#
        ),
        Recipient::Group(g) => write!(
            out,
            r#"{{"op":"send","id":{id},"group":{g},"t":{intended_us},"s":{sent_us},"#
        ),
        Recipient::Business(b) => write!(
            out,
            r#"{{"op":"send","id":{id},"to":{},"t":{intended_us},"s":{sent_us},"#,
            BUSINESS_BASE + b
        ),
    };
    if media.kind != MediaKind::Text {
        let _ = write!(out, r#""k":"{}","n":{},"#, media.kind.name(), media.bytes);
    }
    out.push_str(r#""body":"#);
    push_json_str(&mut out, body);
    out.push('}');
    out
}

pub fn sent(id: u64, intended_us: u64, sent_us: u64) -> String {
    format!(r#"{{"op":"sent","id":{id},"t":{intended_us},"s":{sent_us}}}"#)
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
    let mut out = String::with_capacity(128 + d.body.len());
    let _ = write!(
        out,
        r#"{{"op":"msg","seq":{},"id":{},"from":{},"to":{},"#,
        d.seq, d.id, d.from, d.to
    );
    if let Some(g) = d.group {
        let _ = write!(out, r#""group":{g},"#);
    }
    if d.wamid != 0 {
        let _ = write!(out, r#""w":{},"#, d.wamid);
    }
    if let Some(k) = d.kind {
        out.push_str(r#""k":"#);
        push_json_str(&mut out, k);
        let _ = write!(out, r#","n":{},"#, d.media_bytes);
    }
    let _ = write!(out, r#""t":{},"s":{},"body":"#, d.intended_us, d.sent_us);
    push_json_str(&mut out, d.body);
    out.push('}');
    out
}

pub fn ack(seq: u64, id: u64, from: u32, intended_us: u64, sent_us: u64, wamid: u64) -> String {
    if wamid != 0 {
        return format!(
            r#"{{"op":"ack","seq":{seq},"id":{id},"from":{from},"t":{intended_us},"s":{sent_us},"w":{wamid}}}"#
        );
    }
    format!(r#"{{"op":"ack","seq":{seq},"id":{id},"from":{from},"t":{intended_us},"s":{sent_us}}}"#)
}

pub fn receipt(id: u64, by: u32, intended_us: u64, sent_us: u64) -> String {
    format!(
        r#"{{"op":"receipt","id":{id},"by":{by},"state":"delivered","t":{intended_us},"s":{sent_us}}}"#
    )
}

/// The reader `by` read message `id` from `from`; `read_us` is when the read was meant to
/// happen (the reader's think time already over), so the receipt's transit can be measured.
pub fn read(id: u64, from: u32, wamid: u64, read_us: u64, sent_us: u64) -> String {
    format!(r#"{{"op":"read","id":{id},"from":{from},"w":{wamid},"r":{read_us},"s":{sent_us}}}"#)
}

pub fn read_receipt(id: u64, by: u32, read_us: u64) -> String {
    format!(r#"{{"op":"receipt","id":{id},"by":{by},"state":"read","r":{read_us}}}"#)
}

/// Client → server: `to` sees this user typing; server → client: `from` is typing.
pub fn typing(to: u32, intended_us: u64) -> String {
    format!(r#"{{"op":"typing","to":{to},"r":{intended_us}}}"#)
}

pub fn typing_seen(from: u32, intended_us: u64) -> String {
    format!(r#"{{"op":"typing","from":{from},"r":{intended_us}}}"#)
}

/// Client → server: this user's presence changed; fan it out to `contacts` that are online.
pub fn presence(state: &str, intended_us: u64, contacts: &[u32]) -> String {
    let mut out = String::with_capacity(64 + contacts.len() * 8);
    let _ = write!(
        out,
        r#"{{"op":"presence","state":"{state}","r":{intended_us},"members":["#
    );
    for (i, m) in contacts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{m}");
    }
    out.push_str("]}");
    out
}

pub fn presence_seen(from: u32, state: &str, intended_us: u64) -> String {
    format!(r#"{{"op":"presence","from":{from},"state":"{state}","r":{intended_us}}}"#)
}

/// Client → server: fetch group `g`'s recent history (the member opened the group).
pub fn history(group: u32, intended_us: u64) -> String {
    format!(r#"{{"op":"history","group":{group},"r":{intended_us}}}"#)
}

/// Server → client: the last `count` messages of the group, `bytes` of them (as the body).
pub fn history_ok(group: u32, count: usize, intended_us: u64, body: &str) -> String {
    let mut out =
        format!(r#"{{"op":"history_ok","group":{group},"r":{intended_us},"seq":{count},"body":"#);
    push_json_str(&mut out, body);
    out.push('}');
    out
}

/// The server is going away: reconnect after `after_ms` (a graceful reconnect storm).
pub fn goaway(after_ms: u64) -> String {
    format!(r#"{{"op":"goaway","after_ms":{after_ms}}}"#)
}

pub fn group(id: u32, members: &[u32]) -> String {
    let mut out = String::with_capacity(40 + members.len() * 8);
    let _ = write!(out, r#"{{"op":"group","group":{id},"members":["#);
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{m}");
    }
    out.push_str("]}");
    out
}

pub fn group_ok(id: u32) -> String {
    format!(r#"{{"op":"group_ok","group":{id}}}"#)
}

pub fn error(code: u32, message: &str) -> String {
    let mut out = format!(r#"{{"op":"error","code":{code},"message":"#);
    push_json_str(&mut out, message);
    out.push('}');
    out
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

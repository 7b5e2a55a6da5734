//! The fast reading of a frame in the one shape chatload's own builders write: one flat JSON
//! object, no white space, string values without escapes, numbers as plain unsigned integers
//! and each known field at most once. Every frame of a chat message on both sides has that
//! shape, and reading it here costs a fraction of serde_json's derived reader (which matches
//! each key against 24 names and goes through its generic visitor; `benches/codec.rs`).
//!
//! Owns only that shape. Anything else — white space, an escape, a negative or fractional
//! number, `null`, an array, an unknown or repeated key, a value of the wrong type or size —
//! gives `None`, and [`crate::decode`] hands the text to serde_json, which stays the one
//! judge of what is valid; so a frame reads the same either way (the tests check that on
//! thousands of altered frames).

use crate::Frame;
use std::borrow::Cow;

/// The frame in `text`, if `text` has the builders' shape; `None` otherwise (not "invalid":
/// serde_json decides that).
pub(crate) fn read(text: &str) -> Option<Frame<'_>> {
    let bytes = text.as_bytes();
    let mut at = 1;
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let mut frame = Frame::default();
    let mut has_op = false;
    loop {
        let key = string(text, &mut at)?;
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at += 1;
        let value = match bytes.get(at)? {
            b'"' => Value::Str(string(text, &mut at)?),
            b'0'..=b'9' => Value::Num(number(bytes, &mut at)?),
            _ => return None,
        };
        match (key, value) {
            ("op", Value::Str(op)) if !has_op => {
                frame.op = Cow::Borrowed(op);
                has_op = true;
            }
            (key, value) => field(&mut frame, key, value)?,
        }
        match bytes.get(at)? {
            b',' => at += 1,
            b'}' if at + 1 == bytes.len() && has_op => return Some(frame),
            _ => return None,
        }
    }
}

enum Value<'a> {
    Str(&'a str),
    Num(u64),
}

/// A quoted string at `at` without escapes or control characters (which JSON forbids
/// unescaped), borrowed from `text`; `at` moves past its closing quote.
fn string<'a>(text: &'a str, at: &mut usize) -> Option<&'a str> {
    let bytes = text.as_bytes();
    if bytes.get(*at) != Some(&b'"') {
        return None;
    }
    let start = *at + 1;
    let mut end = start;
    loop {
        match *bytes.get(end)? {
            b'"' => break,
            b'\\' | 0..0x20 => return None,
            _ => end += 1,
        }
    }
    *at = end + 1;
    // Both ends sit next to an ASCII quote, so they are character boundaries.
    text.get(start..end)
}

/// An unsigned integer at `at` as JSON writes one (no leading zero unless it is 0), ending
/// where a `,` or `}` follows; `at` moves past its digits.
fn number(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let start = *at;
    let mut value = 0u64;
    while let Some(&b) = bytes.get(*at) {
        if !b.is_ascii_digit() {
            break;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        *at += 1;
    }
    if *at - start > 1 && bytes[start] == b'0' {
        return None;
    }
    Some(value)
}

/// Stores `value` under `key`; `None` for an unknown or repeated key (serde_json refuses a
/// repeated one) or a value of the wrong type or size.
fn field<'a>(frame: &mut Frame<'a>, key: &str, value: Value<'a>) -> Option<()> {
    fn small(v: u64) -> Option<u32> {
        u32::try_from(v).ok()
    }
    let was_empty = match (key, value) {
        ("body", Value::Str(s)) => frame.body.replace(Cow::Borrowed(s)).is_none(),
        ("message", Value::Str(s)) => frame.message.replace(Cow::Borrowed(s)).is_none(),
        ("state", Value::Str(s)) => frame.state.replace(Cow::Borrowed(s)).is_none(),
        ("k", Value::Str(s)) => frame.k.replace(Cow::Borrowed(s)).is_none(),
        ("user", Value::Num(n)) => frame.user.replace(small(n)?).is_none(),
        ("from", Value::Num(n)) => frame.from.replace(small(n)?).is_none(),
        ("to", Value::Num(n)) => frame.to.replace(small(n)?).is_none(),
        ("group", Value::Num(n)) => frame.group.replace(small(n)?).is_none(),
        ("by", Value::Num(n)) => frame.by.replace(small(n)?).is_none(),
        ("code", Value::Num(n)) => frame.code.replace(small(n)?).is_none(),
        ("last_seq", Value::Num(n)) => frame.last_seq.replace(n).is_none(),
        ("run", Value::Num(n)) => frame.run.replace(n).is_none(),
        ("seq", Value::Num(n)) => frame.seq.replace(n).is_none(),
        ("id", Value::Num(n)) => frame.id.replace(n).is_none(),
        ("t", Value::Num(n)) => frame.t.replace(n).is_none(),
        ("s", Value::Num(n)) => frame.s.replace(n).is_none(),
        ("w", Value::Num(n)) => frame.w.replace(n).is_none(),
        ("r", Value::Num(n)) => frame.r.replace(n).is_none(),
        ("n", Value::Num(n)) => frame.n.replace(n).is_none(),
        ("after_ms", Value::Num(n)) => frame.after_ms.replace(n).is_none(),
        _ => false,
    };
    was_empty.then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, Media, MediaKind, Recipient};

    /// Every frame the builders write, with values at the edges of their types.
    fn built() -> Vec<String> {
        let big = u64::MAX;
        let mut out = vec![
            crate::hello(7, 0, big),
            crate::hello_ok(u32::MAX, 12),
            crate::send(1, Recipient::User(2), 3, 4, crate::filler_body(64)),
            crate::send(big, Recipient::Group(0), 0, big, ""),
            crate::send(5, Recipient::Business(3), 1, 2, "héllo ✓"),
            crate::send_media(
                9,
                Recipient::User(1),
                2,
                3,
                "",
                Media {
                    kind: MediaKind::Video,
                    bytes: 1 << 20,
                },
            ),
            crate::sent(1_000_123_000_045_678, 41_523_117, 41_523_164),
            crate::ack(1, 2, 3, 4, 5, 0),
            crate::ack(1, 2, 3, 4, 5, 6),
            crate::receipt(1, 2, 3, 4),
            crate::read(1, 2, 0, 3, 4),
            crate::read_receipt(1, 2, 3),
            crate::typing(1, 2),
            crate::typing_seen(1, 2),
            crate::presence_seen(1, "online", 2),
            crate::history(1, 2),
            crate::history_ok(1, 2, 3, "xx"),
            crate::goaway(1500),
            crate::group_ok(3),
            crate::error(4, "no such user"),
            crate::PING.to_string(),
            crate::PONG.to_string(),
        ];
        for group in [None, Some(4)] {
            for (kind, wamid) in [(None, 0), (Some("image"), 77)] {
                out.push(crate::msg(&Delivery {
                    seq: 3,
                    id: 4,
                    from: 5,
                    to: 6,
                    group,
                    intended_us: 7,
                    sent_us: 8,
                    body: "body",
                    wamid,
                    kind,
                    media_bytes: 9,
                }));
            }
        }
        out
    }

    fn by_serde(text: &str) -> Option<Frame<'_>> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn reads_every_frame_the_builders_write_as_serde_json_does() {
        for text in built() {
            let fast = read(&text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, by_serde(&text), "{text}");
        }
    }

    #[test]
    fn leaves_other_shapes_to_serde_json() {
        for text in [
            r#"{ "op":"ping"}"#,
            r#"{"op":"ping"} "#,
            r#"{"op":"x","body":"a\"b"}"#,
            r#"{"op":"x","id":-1}"#,
            r#"{"op":"x","id":1.5}"#,
            r#"{"op":"x","id":1e3}"#,
            r#"{"op":"x","id":007}"#,
            r#"{"op":"x","id":null}"#,
            r#"{"op":"x","id":18446744073709551616}"#,
            r#"{"op":"x","user":4294967296}"#,
            r#"{"op":"x","members":[1,2]}"#,
            r#"{"op":"x","unknown":1}"#,
            r#"{"op":"x","id":1,"id":1}"#,
            r#"{"op":"x","op":"y"}"#,
            r#"{"id":1}"#,
            r#"{"op":"x","id":"1"}"#,
            r#"{"op":"x"}}"#,
            "{\"op\":\"x\u{1}\"}",
            "{}",
            "",
        ] {
            assert_eq!(read(text), None, "{text}");
        }
    }

    /// Thousands of frames altered a byte at a time (seeded): whenever the fast path reads
    /// one, serde_json reads the same frame from it.
    #[test]
    fn never_reads_an_altered_frame_differently_from_serde_json() {
        const ALPHABET: &[u8] = b"{}[]\":,0123456789-.e \\aopsidtx\x01";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut read_fast, mut tried) = (0, 0);
        for text in built() {
            for _ in 0..400 {
                let mut bytes = text.clone().into_bytes();
                let at = (next() % bytes.len() as u64) as usize;
                let byte = ALPHABET[(next() % ALPHABET.len() as u64) as usize];
                match next() % 3 {
                    0 => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ => {
                        bytes.remove(at);
                    }
                }
                let Ok(altered) = String::from_utf8(bytes) else {
                    continue;
                };
                tried += 1;
                if let Some(fast) = read(&altered) {
                    read_fast += 1;
                    assert_eq!(Some(fast), by_serde(&altered), "{altered}");
                }
            }
        }
        // The alterations reach both outcomes, or the test would prove nothing.
        assert!(tried > 5_000 && read_fast > 500 && read_fast < tried / 2);
    }
}

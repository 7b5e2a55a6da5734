//! Writing a frame's text: `{"op":…` and then `,"key":value` pairs in the order given, in the
//! one shape [`crate::flat`] reads fast (no white space; strings escaped only when they must
//! be). Owns the JSON spelling of numbers, strings and id lists; not which fields a frame has.
//!
//! Numbers go through `itoa` rather than `format!`: the formatting machinery was most of a
//! frame's building cost on both sides' hot path (`benches/codec.rs`).

pub(crate) struct FrameText(String);

impl FrameText {
    /// A frame of operation `op`, with room for `room` more bytes than its fixed part.
    pub(crate) fn new(op: &str, room: usize) -> FrameText {
        let mut out = String::with_capacity(64 + room);
        out.push_str(r#"{"op":""#);
        out.push_str(op);
        out.push('"');
        FrameText(out)
    }

    fn key(&mut self, key: &str) {
        self.0.push_str(",\"");
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    pub(crate) fn num(mut self, key: &str, value: impl itoa::Integer) -> FrameText {
        self.key(key);
        self.0.push_str(itoa::Buffer::new().format(value));
        self
    }

    pub(crate) fn text(mut self, key: &str, value: &str) -> FrameText {
        self.key(key);
        push_json_str(&mut self.0, value);
        self
    }

    pub(crate) fn ids(mut self, key: &str, ids: &[u32]) -> FrameText {
        self.key(key);
        self.0.push('[');
        let mut digits = itoa::Buffer::new();
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            self.0.push_str(digits.format(*id));
        }
        self.0.push(']');
        self
    }

    pub(crate) fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `s` as a JSON string: copied between quotes when nothing in it needs escaping (every
/// string chatload writes itself), escaped by serde_json otherwise.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b != b'"' && b != b'\\' && b >= 0x20) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else if let Ok(quoted) = serde_json::to_string(s) {
        out.push_str(&quoted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_that_serde_json_reads_back() {
        let text = FrameText::new("x", 0)
            .num("id", u64::MAX)
            .num("to", 0u32)
            .text("body", "a\"b\\c\u{1}é")
            .ids("members", &[1, 22, 333])
            .ids("none", &[])
            .end();
        assert_eq!(
            text,
            r#"{"op":"x","id":18446744073709551615,"to":0,"body":"a\"b\\c\u0001é","members":[1,22,333],"none":[]}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["body"], "a\"b\\c\u{1}é");
    }
}

//! Frame and request templates with `{{placeholder}}` slots, and JSON-pointer extraction of
//! ids from what a target sends back. Parsed once when the scenario compiles; rendering
//! appends to a caller's buffer. Owns the template language; not where frames go.

use std::fmt::Write as _;

/// A value a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The virtual user itself.
    User,
    /// The recipient user, or the group.
    To,
    Group,
    /// chatload's message id (decimal), and the body (which starts with `cl:<id>`).
    Id,
    Body,
    /// The sender of a received message, and the target's sequence number of it.
    From,
    Seq,
    /// Now, and the message's intended send time, on the run's clock.
    NowMs,
    NowUs,
    IntendedUs,
    /// Credentials from the environment.
    Token,
    Username,
    Password,
    /// The system's own ids from `[target.http] ids`: this user's, the recipient's, the
    /// group's, and the conversation's (the direct pair's or the group's).
    UserId,
    ToId,
    GroupId,
    ChatId,
    /// A token of this run (hex), another in every run: for ids an API remembers across
    /// runs, so that a repeated run's requests are not taken as retries of the last one's
    /// (Matrix keeps a transaction id for 30 to 60 minutes).
    Run,
    /// A value a gateway's log-in step captured (`{{captured.name}}`), by its index in
    /// the steps' capture names.
    Captured(u8),
}

const SLOTS: &[(&str, Slot)] = &[
    ("user", Slot::User),
    ("to", Slot::To),
    ("group", Slot::Group),
    ("id", Slot::Id),
    ("body", Slot::Body),
    ("from", Slot::From),
    ("seq", Slot::Seq),
    ("now_ms", Slot::NowMs),
    ("now_us", Slot::NowUs),
    ("intended_us", Slot::IntendedUs),
    ("token", Slot::Token),
    ("username", Slot::Username),
    ("password", Slot::Password),
    ("user_id", Slot::UserId),
    ("to_id", Slot::ToId),
    ("group_id", Slot::GroupId),
    ("chat_id", Slot::ChatId),
    ("run", Slot::Run),
];

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Slot(Slot),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
    source: String,
}

/// Why a template does not parse: the byte offset in the template and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Self::parse_with(source, &[])
    }

    /// Parses a template that may also name `captured` values (`{{captured.session}}`).
    pub fn parse_with(source: &str, captured: &[String]) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError {
                    offset: offset + open,
                    message: "`{{` is not closed: write placeholders as {{name}}".into(),
                });
            };
            let name = after[..close].trim();
            if let Some(capture) = name.strip_prefix("captured.") {
                let Some(i) = captured.iter().position(|c| c == capture) else {
                    return Err(TemplateError {
                        offset: offset + open,
                        message: if captured.is_empty() {
                            format!(
                                "{{{{{name}}}}} names a value no [[target.gateway.login]] step captures"
                            )
                        } else {
                            format!(
                                "{{{{{name}}}}} names a value no log-in step captures: captured are {}",
                                captured.join(", ")
                            )
                        },
                    });
                };
                pieces.push(Piece::Slot(Slot::Captured(i as u8)));
                let used = open + 2 + close + 2;
                offset += used;
                rest = &rest[used..];
                continue;
            }
            let Some((_, slot)) = SLOTS.iter().find(|(n, _)| *n == name) else {
                let names: Vec<&str> = SLOTS.iter().map(|(n, _)| *n).collect();
                return Err(TemplateError {
                    offset: offset + open,
                    message: format!(
                        "unknown placeholder {{{{{name}}}}}: use one of {}",
                        names.join(", ")
                    ),
                });
            };
            pieces.push(Piece::Slot(*slot));
            let used = open + 2 + close + 2;
            offset += used;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template {
            pieces,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, slot: Slot) -> bool {
        self.pieces.contains(&Piece::Slot(slot))
    }

    /// Appends the template with each slot's value from `value` to `out`. Text values are
    /// escaped for a JSON string when `json` is set (the template is then JSON).
    pub fn render_into<'v>(&self, out: &mut String, json: bool, value: impl Fn(Slot) -> Value<'v>) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot(s) => match value(*s) {
                    Value::Number(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Value::Text(t) if json => push_escaped(out, t),
                    Value::Text(t) => out.push_str(t),
                    Value::Null if json => out.push_str("null"),
                    Value::Null | Value::Empty => {}
                },
            }
        }
    }

    pub fn render<'v>(&self, json: bool, value: impl Fn(Slot) -> Value<'v>) -> String {
        let mut out = String::with_capacity(self.source.len() + 64);
        self.render_into(&mut out, json, value);
        out
    }
}

impl serde::Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.source())
    }
}

/// The value of one slot.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Number(u64),
    Text(&'a str),
    /// Not applicable here (a direct message's group): JSON `null`, or nothing in a URL.
    Null,
    Empty,
}

impl<'a> Value<'a> {
    /// A credential's value, or nothing when the scenario names none.
    pub fn secret(v: &'a Option<crate::secrets::Secret>) -> Self {
        v.as_ref().map_or(Value::Empty, |x| Value::Text(x.expose()))
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// A regular expression over a frame's bytes (text or binary), kept with its source.
#[derive(Debug, Clone)]
pub struct Pattern(regex::bytes::Regex);

impl Pattern {
    /// The largest compiled pattern: a scenario cannot make chatload build an automaton
    /// of unbounded size.
    const SIZE_LIMIT: usize = 1 << 20;

    pub fn new(source: &str) -> Result<Pattern, String> {
        regex::bytes::RegexBuilder::new(source)
            .size_limit(Self::SIZE_LIMIT)
            .build()
            .map(Pattern)
            .map_err(|e| {
                // regex's text is several lines (the pattern, a caret, then the reason).
                let text = e.to_string();
                let last = text.lines().last().unwrap_or_default().trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            })
    }

    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.0
    }

    /// The names of its capture groups, in order.
    pub fn names(&self) -> Vec<String> {
        self.0
            .capture_names()
            .flatten()
            .map(str::to_string)
            .collect()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A received frame as a matcher reads it: parsed JSON, or the bytes of a text or binary
/// frame.
#[derive(Debug, Clone, Copy)]
pub enum Frame<'a> {
    Json(&'a serde_json::Value),
    Raw(&'a [u8]),
}

/// Frames of one kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Matcher {
    /// JSON frames where the value at `pointer` equals `equals`.
    Pointer {
        pointer: String,
        equals: serde_json::Value,
    },
    /// Frames (any bytes) where the pattern matches.
    Pattern { pattern: Pattern },
}

impl Matcher {
    pub fn matches(&self, frame: Frame<'_>) -> bool {
        match (self, frame) {
            (Matcher::Pointer { pointer, equals }, Frame::Json(v)) => {
                v.pointer(pointer).is_some_and(|v| {
                    v == equals
                        || match (v, equals) {
                            // A gateway may write as a string what the scenario wrote as a
                            // number.
                            (serde_json::Value::String(a), serde_json::Value::Number(n))
                            | (serde_json::Value::Number(n), serde_json::Value::String(a)) => {
                                a.trim().parse::<f64>().ok() == n.as_f64()
                            }
                            _ => false,
                        }
                })
            }
            (Matcher::Pattern { pattern }, Frame::Raw(b)) => pattern.regex().is_match(b),
            _ => false,
        }
    }

    /// The value a frame that matched holds at `field`: a JSON pointer for JSON frames,
    /// the name of one of the pattern's capture groups otherwise.
    pub fn field(&self, frame: Frame<'_>, field: &str) -> Option<serde_json::Value> {
        match (self, frame) {
            (Matcher::Pointer { .. }, Frame::Json(v)) => v.pointer(field).cloned(),
            (Matcher::Pattern { pattern }, Frame::Raw(b)) => {
                let found = pattern.regex().captures(b)?.name(field)?;
                Some(serde_json::Value::String(
                    String::from_utf8_lossy(found.as_bytes()).into_owned(),
                ))
            }
            _ => None,
        }
    }
}

pub use crate::protocol::correlation::{message_id, number};

/// The body chatload sends for message `id`: its token, then filler up to `size` bytes.
pub fn body_for(out: &mut String, id: u64, size: usize) {
    let _ = write!(out, "cl:{id} ");
    let fill = size.saturating_sub(out.len());
    out.push_str(crate::protocol::filler_body(fill));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str) -> String {
        Template::parse(t).unwrap().render(true, |s| match s {
            Slot::To => Value::Number(7),
            Slot::Id => Value::Number(42),
            Slot::Token => Value::Text("a\"b"),
            Slot::Run => Value::Text("18c2f0a9"),
            _ => Value::Empty,
        })
    }

    #[test]
    fn the_run_token_is_a_slot() {
        assert_eq!(render("c{{run}}-{{id}}"), "c18c2f0a9-42");
        assert!(Template::parse("{{run}}").unwrap().uses(Slot::Run));
    }

    #[test]
    fn slots_render_inside_json() {
        assert_eq!(
            render(r#"{"to":"user-{{to}}","cid":{{id}},"auth":"{{token}}"}"#),
            r#"{"to":"user-7","cid":42,"auth":"a\"b"}"#
        );
    }

    #[test]
    fn json_braces_are_text() {
        assert_eq!(render(r#"{"a":{"b":{{id}}}}"#), r#"{"a":{"b":42}}"#);
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_refused_with_their_offset() {
        let e = Template::parse(r#"{"x":{{recipient}}}"#).unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(e.message.contains("use one of user, to"), "{}", e.message);
        let e = Template::parse(r#"ab{{id"#).unwrap_err();
        assert_eq!(e.offset, 2);
    }

    #[test]
    fn ids_and_numbers_are_found_where_gateways_put_them() {
        use serde_json::json;
        assert_eq!(message_id(&json!(17)), Some(17));
        assert_eq!(message_id(&json!("17")), Some(17));
        assert_eq!(message_id(&json!("cl:99 xxxx")), Some(99));
        assert_eq!(message_id(&json!("hello")), None);
        assert_eq!(number(&json!("user-17")), Some(17));
        assert_eq!(number(&json!(3)), Some(3));
        assert_eq!(number(&json!("nobody")), None);
    }

    #[test]
    fn matchers_compare_strings_and_numbers() {
        use serde_json::json;
        let m = Matcher::Pointer {
            pointer: "/type".into(),
            equals: json!("msg"),
        };
        assert!(m.matches(Frame::Json(&json!({"type":"msg"}))));
        assert!(!m.matches(Frame::Json(&json!({"type":"ack"}))));
        let m = Matcher::Pointer {
            pointer: "/k".into(),
            equals: json!(2),
        };
        assert!(m.matches(Frame::Json(&json!({"k":"2"}))));
        assert!(
            !m.matches(Frame::Raw(b"{\"k\":2}")),
            "a pointer reads JSON only"
        );
    }

    #[test]
    fn patterns_match_text_and_binary_frames_and_read_their_groups() {
        let m = Matcher::Pattern {
            pattern: Pattern::new(r"^MSG (?P<from>\d+) (?P<id>\S+)").unwrap(),
        };
        let frame = Frame::Raw(b"MSG 17 cl:4242 hello");
        assert!(m.matches(frame));
        assert_eq!(m.field(frame, "from"), Some(serde_json::json!("17")));
        assert_eq!(
            m.field(frame, "id").as_ref().and_then(message_id),
            Some(4242)
        );
        assert_eq!(m.field(frame, "group"), None);
        assert!(!m.matches(Frame::Raw(b"ACK 1")));
        // Binary: bytes that are not UTF-8 are matched as they are.
        let m = Matcher::Pattern {
            pattern: Pattern::new(r"(?-u)^\x01\xff(?P<id>\d+)").unwrap(),
        };
        assert!(m.matches(Frame::Raw(b"\x01\xff99")));
        assert_eq!(
            m.field(Frame::Raw(b"\x01\xff99"), "id"),
            Some(serde_json::json!("99"))
        );
        assert!(Pattern::new("(unclosed").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn captured_values_are_named_slots() {
        let names = vec!["session".to_string(), "room".to_string()];
        let t =
            Template::parse_with("JOIN {{captured.room}} AS {{captured.session}}", &names).unwrap();
        let out = t.render(false, |s| match s {
            Slot::Captured(0) => Value::Text("s1"),
            Slot::Captured(1) => Value::Text("r9"),
            _ => Value::Empty,
        });
        assert_eq!(out, "JOIN r9 AS s1");
        let e = Template::parse_with("{{captured.nope}}", &names).unwrap_err();
        assert!(
            e.message.contains("captured are session, room"),
            "{}",
            e.message
        );
        let e = Template::parse("{{captured.session}}").unwrap_err();
        assert!(
            e.message.contains("[[target.gateway.login]]"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bodies_carry_their_token_and_size() {
        let mut b = String::new();
        body_for(&mut b, 12345, 40);
        assert!(b.starts_with("cl:12345 "));
        assert_eq!(b.len(), 40);
    }
}

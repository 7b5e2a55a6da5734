//! XMPP's XML on the wire: cutting the bytes a server sent into the stream header, whole
//! top-level stanzas and the end of the stream; reading one stanza into a small element
//! tree; escaping what chatload writes. Owns bytes ↔ elements, bounded in size; not what
//! the elements mean (`stanza`) nor the log-in (`login`).

use quick_xml::Reader;
use quick_xml::errors::{Error, IllFormedError};
use quick_xml::events::{BytesStart, Event};
use std::borrow::Cow;

/// The largest stanza read (and so the most a server can make a connection buffer): a
/// chat message with chatload's largest body fits many times over.
pub const MAX_STANZA: usize = 256 << 10;
/// Elements nested deeper than this are refused (a server cannot make the reader recurse).
const MAX_DEPTH: usize = 32;

/// One element of a stanza: its name without prefix, its own `xmlns`, attributes, text and
/// children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name` (in namespace `ns` when given).
    pub fn child(&self, name: &str, ns: Option<&str>) -> Option<&Element> {
        self.children
            .iter()
            .find(|c| c.name == name && ns.is_none_or(|n| c.ns == n))
    }

    /// The first child in namespace `ns`, whatever its name.
    pub fn child_in(&self, ns: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns)
    }

    /// The first child's name that is not `text`-only, for error conditions.
    pub fn first_child_name(&self) -> Option<&str> {
        self.children.first().map(|c| c.name.as_str())
    }
}

/// One thing cut from the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// `<stream:stream …>`: the server's stream header, with its attributes.
    Header(Element),
    Stanza(Element),
    /// `</stream:stream>`.
    End,
}

/// Why bytes could not be read as XMPP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("a stanza longer than {MAX_STANZA} bytes")]
    TooLong,
    #[error("elements nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("XML that does not parse: {0}")]
    Malformed(String),
}

fn local(name: &[u8]) -> String {
    let name = match name.iter().position(|b| *b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(name).into_owned()
}

fn open(start: &BytesStart<'_>) -> Result<Element, XmlError> {
    let mut e = Element {
        name: local(start.name().as_ref()),
        ..Element::default()
    };
    for a in start.attributes().with_checks(false) {
        let a = a.map_err(|err| XmlError::Malformed(err.to_string()))?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .unescape_value()
            .map_err(|err| XmlError::Malformed(err.to_string()))?
            .into_owned();
        if key == "xmlns" {
            e.ns = value;
        } else {
            e.attrs.push((key, value));
        }
    }
    Ok(e)
}

/// Whether a reader error means only that the bytes so far end inside a stanza.
fn incomplete(e: &Error) -> bool {
    matches!(
        e,
        Error::Syntax(_)
            | Error::IllFormed(IllFormedError::UnclosedReference)
            | Error::IllFormed(IllFormedError::MissingEndTag(_))
    )
}

/// Cuts the first frame from `buf`: `Ok(Some((frame, bytes used)))`, `Ok(None)` when more
/// bytes are needed, or an error when the bytes can never be XMPP. Whitespace between
/// stanzas (keep-alives) and XML declarations are skipped and counted as used.
pub fn cut(buf: &[u8]) -> Result<Option<(Frame, usize)>, XmlError> {
    let skip = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    let rest = &buf[skip..];
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.starts_with(b"</") {
        return match rest.iter().position(|b| *b == b'>') {
            Some(end) if local(&rest[2..end]).trim() == "stream" => {
                Ok(Some((Frame::End, skip + end + 1)))
            }
            Some(_) => Err(XmlError::Malformed("an end tag outside any element".into())),
            None if rest.len() > 64 => Err(XmlError::Malformed("an unfinished end tag".into())),
            None => Ok(None),
        };
    }
    let mut reader = Reader::from_reader(rest);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) if incomplete(&e) && rest.len() < MAX_STANZA => return Ok(None),
            Err(_) if rest.len() >= MAX_STANZA => return Err(XmlError::TooLong),
            Err(e) => return Err(XmlError::Malformed(e.to_string())),
        };
        let used = skip + reader.buffer_position() as usize;
        match event {
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_)
                if stack.is_empty() => {}
            Event::Start(s) if stack.is_empty() && local(s.name().as_ref()) == "stream" => {
                return Ok(Some((Frame::Header(open(&s)?), used)));
            }
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push(open(&s)?);
            }
            Event::Empty(s) => {
                let e = open(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => return Ok(Some((Frame::Stanza(e), used))),
                }
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Malformed("an unmatched end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Ok(Some((Frame::Stanza(done), used))),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let raw = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    top.text.push_str(&raw);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                        Ok(Some(c)) => Cow::Owned(c.to_string()),
                        _ => {
                            let name =
                                r.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                            match quick_xml::escape::resolve_predefined_entity(&name) {
                                Some(v) => Cow::Borrowed(v),
                                None => {
                                    return Err(XmlError::Malformed(format!(
                                        "an unknown entity &{name};"
                                    )));
                                }
                            }
                        }
                    };
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => {
                return if rest.len() >= MAX_STANZA {
                    Err(XmlError::TooLong)
                } else {
                    Ok(None)
                };
            }
            _ => {}
        }
        if reader.buffer_position() as usize > MAX_STANZA {
            return Err(XmlError::TooLong);
        }
    }
}

/// Escapes text or an attribute value for a stanza chatload writes.
pub fn esc(text: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(text: &str) -> Element {
        match cut(text.as_bytes()) {
            Ok(Some((Frame::Stanza(e), n))) => {
                assert_eq!(n, text.len());
                e
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_header_then_stanzas_are_cut_one_by_one() {
        let wire = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' from='localhost' id='s1' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features> <message/>";
        let Ok(Some((Frame::Header(h), n))) = cut(wire) else {
            panic!()
        };
        assert_eq!(h.attr("id"), Some("s1"));
        let Ok(Some((Frame::Stanza(f), m))) = cut(&wire[n..]) else {
            panic!()
        };
        assert_eq!(f.name, "features");
        let mechs = f.child("mechanisms", Some("urn:ietf:params:xml:ns:xmpp-sasl"));
        assert_eq!(mechs.unwrap().children[0].text, "SCRAM-SHA-1");
        let Ok(Some((Frame::Stanza(e), _))) = cut(&wire[n + m..]) else {
            panic!()
        };
        assert_eq!(e.name, "message");
    }

    #[test]
    fn a_stanza_cut_anywhere_waits_for_the_rest() {
        let text = "<message from='u1@h/r' type='chat'><body>a &amp; b &#x263A;</body><x xmlns='urn:chatload:0' id='7'/></message>";
        for end in 0..text.len() {
            assert_eq!(
                cut(&text.as_bytes()[..end]),
                Ok(None),
                "cut at {end}: {}",
                &text[..end]
            );
        }
        let e = stanza(text);
        assert_eq!(e.child("body", None).unwrap().text, "a & b ☺");
        assert_eq!(e.child_in("urn:chatload:0").unwrap().attr("id"), Some("7"));
    }

    #[test]
    fn the_end_of_the_stream_and_keepalives() {
        assert_eq!(cut(b"  \n "), Ok(None));
        assert_eq!(cut(b" </stream:stream>"), Ok(Some((Frame::End, 17))));
        assert!(cut(b"<a></b>").is_err());
    }

    #[test]
    fn hostile_sizes_and_depths_are_refused() {
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str("<a>");
        }
        assert_eq!(cut(deep.as_bytes()), Err(XmlError::TooDeep));
        let long = format!("<message><body>{}", "x".repeat(MAX_STANZA + 10));
        assert_eq!(cut(long.as_bytes()), Err(XmlError::TooLong));
        assert!(cut(b"<message>&bogus;</message>").is_err());
    }
}

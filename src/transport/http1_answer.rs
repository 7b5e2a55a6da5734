//! One HTTP/1.1 answer read from the bytes at the front of a buffer, in place with
//! `httparse`: its status, a body framed by Content-Length, chunks or the connection's end,
//! and whether the server closes after it; a body longer than `max_answer` is refused from
//! what is known of it, before it is read; and what an answer means for the message it
//! confirms (`judge`). Owns that framing and that judgement; not the connection (`http1`).

use super::Incoming;
use crate::metrics::ErrorKind;

/// Headers an answer may carry; more is a protocol error.
const MAX_HEADERS: usize = 64;

/// The answer to one request, as far as a sender cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The body, kept only when asked for (message id) or for a refusal's detail.
    pub body: Vec<u8>,
}

/// How far one response has been parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A whole answer of `used` bytes; `close` when the server ends the connection after it.
    Done {
        answer: Answer,
        used: usize,
        close: bool,
    },
    /// The body runs until the server closes (no length given).
    UntilClose { status: u16, head: usize },
    /// Not an answer this client can read (`Protocol`), or one longer than `max_answer`
    /// allows (`AnswerTooLong`): the connection cannot be used again either way.
    Bad(ErrorKind, String),
}

fn header_is(h: &httparse::Header<'_>, name: &str, value: &str) -> bool {
    h.name.eq_ignore_ascii_case(name)
        && std::str::from_utf8(h.value)
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(value)))
}

/// Parses one response at the front of `buf`. `keep_body` keeps a 2xx body; error bodies are
/// always kept (their text explains the refusal). A body longer than `max_answer` is refused,
/// so that no answer can make a connection hold more than that.
pub fn parse(buf: &[u8], keep_body: bool, head_request: bool, max_answer: usize) -> Parsed {
    let mut skip = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let head = match resp.parse(&buf[skip..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(e) => {
                return Parsed::Bad(ErrorKind::Protocol, format!("not an HTTP/1.1 answer ({e})"));
            }
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // 100 Continue and other interim answers precede the real one.
            skip += head;
            continue;
        }
        let keep = keep_body || !(200..300).contains(&status);
        let close = resp
            .headers
            .iter()
            .any(|h| header_is(h, "connection", "close"))
            || resp.version == Some(0);
        let start = skip + head;
        if head_request || status == 204 || status == 304 {
            return Parsed::Done {
                answer: Answer {
                    status,
                    body: Vec::new(),
                },
                used: start,
                close,
            };
        }
        if resp
            .headers
            .iter()
            .any(|h| header_is(h, "transfer-encoding", "chunked"))
        {
            return match dechunk(&buf[start..], keep, max_answer) {
                Ok(Some((body, n))) => Parsed::Done {
                    answer: Answer { status, body },
                    used: start + n,
                    close,
                },
                Ok(None) => Parsed::Partial,
                Err((kind, why)) => Parsed::Bad(kind, why),
            };
        }
        let length = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
        return match length {
            Some(Some(n)) if n > max_answer => Parsed::Bad(
                ErrorKind::AnswerTooLong,
                format!(
                    "an answer of {n} bytes, more than max_answer ({max_answer} bytes) allows; the {} bytes past it were not read",
                    n - max_answer
                ),
            ),
            Some(Some(n)) if buf.len() >= start + n => Parsed::Done {
                answer: Answer {
                    status,
                    body: if keep {
                        buf[start..start + n].to_vec()
                    } else {
                        Vec::new()
                    },
                },
                used: start + n,
                close,
            },
            Some(Some(_)) => Parsed::Partial,
            Some(None) => Parsed::Bad(ErrorKind::Protocol, "an unreadable Content-Length".into()),
            None => Parsed::UntilClose {
                status,
                head: start,
            },
        };
    }
}

/// A chunked body (kept or not) and the bytes it used.
type Dechunked = (Vec<u8>, usize);

/// A chunked body at the front of `buf`: the body (when kept) and the bytes it used, or
/// `None` when more bytes are needed.
fn dechunk(
    buf: &[u8],
    keep: bool,
    max_answer: usize,
) -> Result<Option<Dechunked>, (ErrorKind, String)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (n, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete(x)) => x,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err((ErrorKind::Protocol, "a malformed chunked body".into())),
        };
        let too_long = || {
            (
                ErrorKind::AnswerTooLong,
                format!(
                    "a chunked answer of more than max_answer ({max_answer} bytes); the rest was not read"
                ),
            )
        };
        let size = usize::try_from(size).map_err(|_| too_long())?;
        if size > max_answer || at + size > max_answer + 64 * 1024 {
            return Err(too_long());
        }
        at += n;
        if size == 0 {
            // Trailers end with an empty line.
            return Ok(find_blank_line(&buf[at..]).map(|end| (body, at + end)));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if keep {
            body.extend_from_slice(&buf[at..at + size]);
        }
        at += size + 2;
    }
}

/// Bytes up to and including the line that ends a trailer section ("\r\n" alone first).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// What an answer means for the message it confirms.
pub fn judge(
    id: u64,
    outcome: Result<Answer, (ErrorKind, String)>,
    id_pointer: Option<&str>,
) -> Incoming {
    let answer = match outcome {
        Ok(a) => a,
        Err((kind, detail)) => {
            return Incoming::Rejected {
                id,
                kind,
                detail: crate::secrets::redact(&detail),
            };
        }
    };
    if !(200..300).contains(&answer.status) {
        let text = String::from_utf8_lossy(&answer.body);
        return Incoming::Rejected {
            id,
            kind: ErrorKind::for_status(answer.status),
            detail: format!(
                "HTTP {}: {}",
                answer.status,
                crate::secrets::excerpt(&text, 160)
            ),
        };
    }
    if let Some(p) = id_pointer {
        let found = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .is_some_and(|v| v.pointer(p).is_some());
        if !found {
            return Incoming::Rejected {
                id,
                kind: ErrorKind::Protocol,
                detail: format!("a 2xx answer without a message id at {p}"),
            };
        }
    }
    Incoming::Accepted { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_confirmations_or_refusals() {
        let ok = Answer {
            status: 200,
            body: br#"{"id":"m.1"}"#.to_vec(),
        };
        assert_eq!(
            judge(7, Ok(ok.clone()), Some("/id")),
            Incoming::Accepted { id: 7 }
        );
        assert!(matches!(
            judge(7, Ok(ok), Some("/missing")),
            Incoming::Rejected {
                kind: ErrorKind::Protocol,
                ..
            }
        ));
        let refused = Answer {
            status: 429,
            body: b"slow down".to_vec(),
        };
        assert!(matches!(
            judge(7, Ok(refused), None),
            Incoming::Rejected {
                kind: ErrorKind::Http4xx,
                ..
            }
        ));
    }

    #[test]
    fn an_answer_longer_than_max_answer_is_refused_before_it_is_read() {
        // A gigabyte promised: refused from the head alone, nothing buffered for it.
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\nxx";
        assert!(
            matches!(parse(r, false, false, 65536), Parsed::Bad(ErrorKind::AnswerTooLong, why) if why.contains("max_answer"))
        );
        // Chunked: each chunk and the whole body are held to it as well.
        let big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20000\r\n";
        assert!(matches!(
            parse(big, true, false, 65536),
            Parsed::Bad(ErrorKind::AnswerTooLong, _)
        ));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(done(parse(r, true, false, 256)).1, b"hello");
    }

    fn done(p: Parsed) -> (u16, Vec<u8>, usize, bool) {
        match p {
            Parsed::Done {
                answer,
                used,
                close,
            } => (answer.status, answer.body, used, close),
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn content_length_bodies_are_framed_exactly() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204";
        let (status, body, used, close) = done(parse(r, true, false, 1 << 20));
        assert_eq!(
            (status, body.as_slice(), used, close),
            (200, &b"hello"[..], 43, false)
        );
        // Without asking for it, a 2xx body is skipped, not copied.
        assert!(done(parse(r, false, false, 1 << 20)).1.is_empty());
        assert_eq!(parse(&r[..40], true, false, 1 << 20), Parsed::Partial);
    }

    #[test]
    fn chunked_bodies_and_interim_answers() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let (status, body, used, _) = done(parse(r, true, false, 1 << 20));
        assert_eq!(
            (status, body.as_slice(), used),
            (201, &b"abcde"[..], r.len())
        );
        assert_eq!(
            parse(&r[..r.len() - 1], true, false, 1 << 20),
            Parsed::Partial
        );
    }

    #[test]
    fn error_bodies_are_kept_and_close_is_seen() {
        let r = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy";
        let (status, body, _, close) = done(parse(r, false, false, 1 << 20));
        assert_eq!((status, body.as_slice(), close), (503, &b"busy"[..], true));
        assert!(matches!(
            parse(b"garbage\r\n\r\n", false, false, 1 << 20),
            Parsed::Bad(..)
        ));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n\r\nrest", false, false, 1 << 20),
            Parsed::UntilClose {
                status: 200,
                head: 19
            }
        );
    }
}

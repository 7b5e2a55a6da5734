//! One request by the run's reqwest client — an open model's request whose URL names another
//! host than the target's: sent, at most `max_answer` of its answer read, and what that
//! answer means for the message it carries. Owns that exchange; not the lean connections
//! that carry requests for the target's own host (`http1`, pooled by `http1_pool`), nor the
//! session that queues requests (`http`).

use super::Incoming;
use super::http_error::{classify, describe};
use crate::metrics::ErrorKind;

/// At most `max` bytes of an answer's body, read as they come; `None` when the body is longer
/// (its length promised or seen), so that a target cannot make chatload hold a body of any
/// size. Stops reading at the cap: the rest is never buffered.
pub(super) async fn capped_body(
    resp: &mut reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    let too_long = |n: u64, declared: bool| {
        format!(
            "an answer of {n}{} bytes, more than max_answer ({max} bytes) allows; the {}{} bytes past it were not read",
            if declared { "" } else { "+" },
            n - max as u64,
            if declared { "" } else { "+" },
        )
    };
    if let Some(n) = resp.content_length()
        && n > max as u64
    {
        return Err(too_long(n, true));
    }
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > max {
                    return Err(too_long((body.len() + c.len()) as u64, false));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => return Ok(body),
            // Cut mid-body: what arrived is enough to explain a refusal.
            Err(_) => return Ok(body),
        }
    }
}

pub(super) async fn perform(
    req: reqwest::RequestBuilder,
    id: u64,
    id_pointer: Option<String>,
    max_answer: usize,
) -> Incoming {
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Incoming::Rejected {
                id,
                kind: classify(&e),
                detail: describe(&e),
            };
        }
    };
    let status = resp.status();
    if !status.is_success() {
        let detail = match capped_body(&mut resp, max_answer).await {
            Ok(body) => format!(
                "HTTP {status}: {}",
                crate::secrets::excerpt(&String::from_utf8_lossy(&body), 160)
            ),
            Err(why) => format!("HTTP {status}: {why}"),
        };
        return Incoming::Rejected {
            id,
            kind: ErrorKind::for_status(status.as_u16()),
            detail,
        };
    }
    if let Some(p) = id_pointer {
        // The API's own id is not needed to measure; an answer without one is a protocol
        // error worth counting, since the API promised it.
        let body = match capped_body(&mut resp, max_answer).await {
            Ok(b) => b,
            Err(why) => {
                return Incoming::Rejected {
                    id,
                    kind: ErrorKind::AnswerTooLong,
                    detail: why,
                };
            }
        };
        let found = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer(&p).cloned());
        if found.is_none() {
            return Incoming::Rejected {
                id,
                kind: ErrorKind::Protocol,
                detail: format!("a 2xx answer without a message id at {p}"),
            };
        }
    }
    Incoming::Accepted { id }
}

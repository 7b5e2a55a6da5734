//! The business HTTP API's framing (hyper): routes, JSON bodies in and out, the Graph error
//! envelope. Owns nothing but translation; decisions are in `business`.
//!
//! `POST /v1/{business}/messages` (send, or mark read with a typing indicator),
//! `PUT /v1/{business}/webhook` `{"url": …}`, `GET /v1/{business}/limits`,
//! `POST /v1/users/{user}/messages` (a plain user-to-user send: `to` or `group`, `id`, `t`,
//! `s`, `body`; the recipients get it over their WebSocket),
//! `POST /admin/config` (limits as JSON), `POST /admin/goaway` (a graceful reconnect storm:
//! `pattern`, `fraction`, `seed`, `after_ms`), `GET /healthz`, `GET /metrics`.

use super::{ApiError, Category, SendRequest, parse_correlation, parse_inbound_wamid};
use crate::hub::Hub;
use crate::protocol::{self, BUSINESS_BASE};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::net::TcpStream;

const MAX_BODY: usize = 256 * 1024;
/// How long a withheld response (timeout-after-accept fault) is held before it is sent anyway.
const WITHHOLD: Duration = Duration::from_secs(30);

/// Serves one connection's requests; a client that takes longer than `header_timeout` to
/// send a request's header is disconnected, so half-sent headers cannot pin descriptors.
pub async fn serve(stream: TcpStream, hub: Arc<Hub>, header_timeout: Duration) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let counts = hub.clone();
    let service = hyper::service::service_fn(move |req| handle(req, hub.clone()));
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
    if served.is_err_and(|e| e.is_timeout()) {
        counts.stats.headers_timed_out.fetch_add(1, Relaxed);
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: String, content_type: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, v: Value) -> Reply {
    reply(status, v.to_string(), "application/json")
}

fn graph_error(e: ApiError, details: &str) -> Reply {
    json_reply(
        StatusCode::from_u16(e.http).unwrap_or(StatusCode::BAD_REQUEST),
        json!({"error": {
            "message": e.message,
            "type": "OAuthException",
            "code": e.code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "chatload-reference",
        }}),
    )
}

async fn handle(req: Request<Incoming>, hub: Arc<Hub>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(graph_error(ApiError::BAD_REQUEST, "body too large or cut")),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Ok(match (&method, parts.as_slice()) {
        (&Method::GET, ["healthz"]) => reply(StatusCode::OK, "ok".into(), "text/plain"),
        (&Method::GET, ["metrics"]) => reply(StatusCode::OK, metrics(&hub), "text/plain"),
        (&Method::POST, ["admin", "goaway"]) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match (v["pattern"].as_u64(), v["fraction"].as_f64()) {
                (Some(pattern), Some(fraction)) => {
                    let n = hub.goaway(
                        v["seed"].as_u64().unwrap_or(0),
                        pattern as u16,
                        fraction,
                        v["after_ms"].as_u64().unwrap_or(0),
                    );
                    json_reply(StatusCode::OK, json!({"success": true, "asked": n}))
                }
                _ => graph_error(
                    ApiError::BAD_REQUEST,
                    "goaway needs `pattern` and `fraction`",
                ),
            }
        }
        (&Method::POST, ["admin", "config"]) => match serde_json::from_slice(&body) {
            Ok(limits) => {
                hub.business.configure(limits);
                json_reply(StatusCode::OK, json!({"success": true}))
            }
            Err(e) => graph_error(ApiError::BAD_REQUEST, &format!("bad limits: {e}")),
        },
        (&Method::POST, ["v1", "users", from, "messages"]) => user_message(&hub, from, &body),
        (_, ["v1", business, rest]) => {
            let Ok(business) = business.parse::<u32>() else {
                return Ok(graph_error(
                    ApiError::BAD_REQUEST,
                    "the business id is a number",
                ));
            };
            match (&method, *rest) {
                (&Method::POST, "messages") => messages(&hub, business, &body).await,
                (&Method::PUT | &Method::POST, "webhook") => {
                    let v = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
                    match (v["url"].as_str(), webhook_segment(&v["segment"])) {
                        (Some(url), Ok(segment)) => {
                            hub.business.webhooks.register(business, url, segment);
                            json_reply(StatusCode::OK, json!({"success": true}))
                        }
                        (None, _) => graph_error(ApiError::BAD_REQUEST, "webhook needs `url`"),
                        (_, Err(why)) => graph_error(ApiError::BAD_REQUEST, why),
                    }
                }
                (&Method::GET, "limits") => {
                    let (l, used) = hub.business.usage(business);
                    json_reply(
                        StatusCode::OK,
                        json!({
                            "throughput_mps": l.throughput_mps,
                            "messaging_limit_24h": l.messaging_limit,
                            "unique_recipients_used": used,
                            "window_ms": l.window_ms,
                            "quality": "GREEN",
                        }),
                    )
                }
                _ => reply(StatusCode::NOT_FOUND, "not found".into(), "text/plain"),
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "not found".into(), "text/plain"),
    })
}

fn parse_user(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

async fn messages(hub: &Hub, business: u32, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return graph_error(ApiError::BAD_REQUEST, "the body is not JSON");
    };
    if v["status"] == "read" {
        return mark_read(hub, business, &v);
    }
    let Some(to) = parse_user(&v["to"]) else {
        return graph_error(ApiError::BAD_REQUEST, "`to` is missing or not a user id");
    };
    let kind = v["type"].as_str().unwrap_or("text").to_string();
    let (category, text) = match kind.as_str() {
        "template" => (
            Category::parse(v["template"]["category"].as_str().unwrap_or("utility")),
            v["template"]["components"][0]["parameters"][0]["text"]
                .as_str()
                .unwrap_or(""),
        ),
        "interactive" => (
            Category::Service,
            v["interactive"]["body"]["text"].as_str().unwrap_or(""),
        ),
        _ => (Category::Service, v["text"]["body"].as_str().unwrap_or("")),
    };
    let callback = v["biz_opaque_callback_data"].as_str().map(String::from);
    let correlation = callback
        .as_deref()
        .and_then(parse_correlation)
        .unwrap_or((0, 0, 0));
    let req = SendRequest {
        to,
        kind,
        category,
        body: text.to_string(),
        callback,
    };
    match hub.business.send(hub, business, &req, correlation) {
        Ok(accepted) => {
            if accepted.withhold {
                tokio::time::sleep(WITHHOLD).await;
            }
            json_reply(
                StatusCode::OK,
                json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to.to_string(), "wa_id": to.to_string()}],
                    "messages": [{"id": format!("wamid.{}", accepted.wamid), "message_status": "accepted"}],
                }),
            )
        }
        Err(e) => graph_error(e, "refused by the reference server"),
    }
}

/// Mark an inbound message read, optionally showing a typing indicator to its sender.
fn mark_read(hub: &Hub, business: u32, v: &Value) -> Reply {
    let Some((user, id)) = v["message_id"].as_str().and_then(parse_inbound_wamid) else {
        return graph_error(ApiError::BAD_REQUEST, "unknown `message_id`");
    };
    let from = BUSINESS_BASE + business;
    hub.notify(user, protocol::read_receipt(id, from, 0).into());
    if v["typing_indicator"].is_object() {
        hub.notify(user, protocol::typing_seen(from, 0).into());
    }
    json_reply(StatusCode::OK, json!({"success": true}))
}

fn metrics(hub: &Hub) -> String {
    let s = hub.snapshot();
    let b = &hub.business.stats;
    let mut out = format!(
        "chatload_server_connections_total {}\nchatload_server_accepted_total {}\nchatload_server_delivered_total {}\nchatload_server_deliveries_written_total {}\nchatload_server_connections_refused_total {}\nchatload_server_headers_timed_out_total {}\nchatload_server_groups_refused_total {}\nchatload_server_queue_overflowed_total {}\nchatload_server_queue_full_total {}\nchatload_server_slow_readers_total {}\nchatload_server_malformed_total {}\nchatload_business_accepted_total {}\nchatload_business_inbound_total {}\nchatload_business_statuses_total {}\n",
        s.connections,
        s.accepted,
        s.delivered,
        hub.stats.written.load(Relaxed),
        s.connections_refused,
        s.headers_timed_out,
        s.groups_refused,
        s.overflowed,
        s.queue_full,
        s.slow_readers,
        s.malformed,
        b.accepted.load(Relaxed),
        b.inbound.load(Relaxed),
        b.statuses.load(Relaxed),
    );
    for (code, n) in hub.business.refusals() {
        out.push_str(&format!(
            "chatload_business_refused_total{{code=\"{code}\"}} {n}\n"
        ));
    }
    out
}

/// A user's message sent over HTTP instead of its WebSocket (the generic HTTP transport's
/// reference endpoint): delivered exactly as a WebSocket `send` is.
fn user_message(hub: &Hub, from: &str, body: &[u8]) -> Reply {
    let bad = |why: &str| json_reply(StatusCode::BAD_REQUEST, json!({"error": why}));
    let Ok(from) = from.parse::<u32>() else {
        return bad("the user id is a number");
    };
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return bad("the body is not JSON");
    };
    let num = |k: &str| v.get(k).and_then(crate::protocol::correlation::number);
    let Some(id) = v
        .get("id")
        .and_then(crate::protocol::correlation::message_id)
    else {
        return bad("a message needs `id`");
    };
    let text = v["body"].as_str().unwrap_or("");
    let accepted_at = std::time::Instant::now();
    if hub.accept_unordered_send(from, id) {
        hub.stats.accepted.fetch_add(1, Relaxed);
        let base = protocol::Delivery {
            seq: 0,
            id,
            from,
            to: 0,
            group: num("group"),
            intended_us: v["t"].as_u64().unwrap_or(0),
            sent_us: v["s"].as_u64().unwrap_or(0),
            body: text,
            wamid: 0,
            kind: None,
            media_bytes: 0,
        };
        // The sender's run is the one its receiving session said hello with.
        let run = hub.run_of(from);
        if let Err((code, why)) = hub.user_send(num("to"), num("group"), base, (accepted_at, run)) {
            return json_reply(
                StatusCode::from_u16(code as u16).unwrap_or(StatusCode::BAD_REQUEST),
                json!({"error": why}),
            );
        }
    }
    json_reply(StatusCode::OK, json!({"id": format!("msg.{id}")}))
}

/// The optional `segment: {index, count}` of a webhook registration from one machine of a
/// split run.
fn webhook_segment(v: &Value) -> Result<Option<super::routes::SegmentSlot>, &'static str> {
    if v.is_null() {
        return Ok(None);
    }
    let (Some(index), Some(count)) = (v["index"].as_u64(), v["count"].as_u64()) else {
        return Err("`segment` needs `index` and `count`");
    };
    if count == 0 || index >= count || count > 65_536 {
        return Err("`segment` needs 0 <= index < count <= 65536");
    }
    Ok(Some(super::routes::SegmentSlot {
        index: index as u32,
        count: count as u32,
    }))
}

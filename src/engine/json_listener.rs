//! A small HTTP endpoint that takes JSON POSTs (webhooks) and hands each parsed body to a
//! function. Shared by the business webhook receiver and the HTTP transport's delivery
//! webhook. Owns the socket, the HTTP framing and the bounds on what a sender can make it
//! hold (connections, header time, body bytes); not what a body means.

use crate::engine::context::RunContext;
use crate::metrics::ErrorKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The longest body one request may send; a longer one is answered 413 and counted.
const MAX_BODY: usize = 4 << 20;
/// Webhook connections open at once; more are closed as they arrive (and counted): a sender
/// that opens connections and never closes them must not take the file descriptors the
/// run's users need.
const MAX_CONNECTIONS: usize = 1024;
/// Bytes of bodies held at once, all connections together; a body that would pass it is
/// answered 503 with `Retry-After` (webhook senders retry) and counted.
const MAX_HELD: usize = 64 << 20;
/// A request's header must arrive within this, or its connection is closed. hyper runs this
/// timer also while a kept-alive connection waits for its next request, so it is longer than
/// senders keep an idle connection (reqwest: 90 s): were chatload to close one first, a post
/// the sender started on it at that moment would fail and its deliveries count as lost.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A running listener; stops, with every connection it took, when stopped or dropped.
pub struct JsonListener {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl JsonListener {
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for JsonListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The function a body goes to, with the request's path.
type Absorb = dyn Fn(&RunContext, &str, &Value) + Send + Sync;

/// What the listener answers a JSON body it took. Senders that parse the answer (Matrix
/// homeservers retry a transaction whose answer is not JSON, and hold back every later one)
/// need a JSON body; `{}` is what they all accept.
#[derive(Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Default for Answer {
    fn default() -> Self {
        Answer {
            status: StatusCode::OK,
            body: Bytes::from_static(b"{}"),
        }
    }
}

/// Listens on `addr`; every JSON body sent (with any method) goes to `absorb` and is
/// answered with `answer`; anything else is counted as a protocol error and answered 400.
pub async fn start(
    addr: &str,
    ctx: Arc<RunContext>,
    absorb: Arc<Absorb>,
    answer: Answer,
) -> std::io::Result<JsonListener> {
    let listener = chatload_protocol::listen::bind(addr).await?;
    let addr = listener.local_addr()?;
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let held = Arc::new(Semaphore::new(MAX_HELD));
    let task = tokio::spawn(async move {
        // The connections live in this task and end with it: a kept-alive connection that
        // outlived `stop` would go on taking a sender's pushes for a run already counted
        // (the next run of the same process, a capacity step, would never see them).
        let mut served = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                Some(_) = served.join_next() => continue,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors: what the sender pushes waits in the kernel's queue
                    // meanwhile, and its deliveries would look late for the target's sake.
                    if crate::transport::source::is_local_limit(&e) {
                        ctx.recorders.local().error(ErrorKind::LocalLimit, || {
                            format!("the webhook receiver could not accept a connection, a limit of the machine chatload runs on and not the target's: {e}")
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(open) = connections.clone().try_acquire_owned() else {
                ctx.recorders.local().error(ErrorKind::Http, || {
                    format!("a webhook connection was closed on arrival: {MAX_CONNECTIONS} were open already")
                });
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (ctx, absorb, answer, held) =
                (ctx.clone(), absorb.clone(), answer.clone(), held.clone());
            served.spawn(async move {
                let service = {
                    let ctx = ctx.clone();
                    hyper::service::service_fn(move |req| {
                        handle(
                            req,
                            ctx.clone(),
                            absorb.clone(),
                            answer.clone(),
                            held.clone(),
                        )
                    })
                };
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = served
                    && e.is_timeout()
                {
                    ctx.recorders.local().error(ErrorKind::Http, || {
                        format!("a webhook connection sent no whole header within {HEADER_TIMEOUT:?} and was closed")
                    });
                }
                drop(open);
            });
        }
    });
    Ok(JsonListener { addr, task })
}

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<RunContext>,
    absorb: Arc<Absorb>,
    answer: Answer,
    held: Arc<Semaphore>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = match collect(req.into_body(), &held).await {
        Ok(body) => Ok(body),
        Err(Refusal::TooLong) => {
            ctx.recorders.local().error(ErrorKind::Http, || {
                format!("a webhook body of more than {MAX_BODY} bytes was answered 413")
            });
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Err(Refusal::Busy) => {
            ctx.recorders.local().error(ErrorKind::Http, || {
                format!("a webhook was answered 503: the bodies being read held {MAX_HELD} bytes already")
            });
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
            return Ok(r);
        }
        Err(Refusal::Broken) => Err(StatusCode::BAD_REQUEST),
    };
    let status = match body {
        Ok((bytes, _permit)) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => {
                absorb(&ctx, &path, &v);
                let mut r = Response::new(Full::new(answer.body));
                *r.status_mut() = answer.status;
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                return Ok(r);
            }
            Err(e) => {
                ctx.recorders.local().error(ErrorKind::Protocol, || {
                    format!("a webhook was not JSON: {e}")
                });
                StatusCode::BAD_REQUEST
            }
        },
        Err(status) => status,
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    Ok(r)
}

/// Why a body was not taken.
enum Refusal {
    TooLong,
    Busy,
    /// The connection failed while the body was read.
    Broken,
}

/// The whole body, with the share of [`MAX_HELD`] it holds until dropped.
async fn collect(
    mut body: Incoming,
    held: &Arc<Semaphore>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), Refusal> {
    let mut bytes = Vec::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(Refusal::Broken);
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > MAX_BODY {
            return Err(Refusal::TooLong);
        }
        let n = u32::try_from(data.len()).map_err(|_| Refusal::TooLong)?;
        let more = held
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| Refusal::Busy)?;
        match permit.as_mut() {
            Some(p) => p.merge(more),
            None => permit = Some(more),
        }
        bytes.extend_from_slice(&data);
    }
    Ok((bytes, permit))
}

//! A small HTTP endpoint that takes JSON POSTs (webhooks) and hands each parsed body to a
//! function. Shared by the business webhook receiver and the HTTP transport's delivery
//! webhook. Owns the socket and the HTTP framing; not what a body means.

use crate::engine::context::RunContext;
use crate::metrics::ErrorKind;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

const MAX_BODY: usize = 4 << 20;

/// A running listener; stops when its task is aborted.
pub struct JsonListener {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl JsonListener {
    pub fn stop(self) {
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
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (ctx, absorb, answer) = (ctx.clone(), absorb.clone(), answer.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    handle(req, ctx.clone(), absorb.clone(), answer.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
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
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = Limited::new(req.into_body(), MAX_BODY).collect().await;
    let status = match body.map(|b| b.to_bytes()) {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
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
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    Ok(r)
}

//! A small independent HTTP messaging API for the HTTP transport tests: `POST /api/send`
//! with `{"from","to","ref","text"}` answers `202 {"message":{"id":…}}` and posts each
//! delivery to a webhook as `{"deliveries":[{"recipient":"u-N","ref":…,"sender":"u-M"}]}`.
//! Every `fail_every`-th send is answered 503 and never delivered. With `redeliver_every`,
//! batches go Matrix-style (`PUT <webhook>/transactions/t<N>`) and every such batch is put
//! again under the same transaction once the first answer came, as an at-least-once sender
//! does; every answer to a batch is checked to be `200 {}`. Optional TLS.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::net::TcpListener;

#[derive(Default)]
pub struct ChatApi {
    pub sends: AtomicU64,
    pub refused: AtomicU64,
    pub fail_every: u64,
    pub webhook: std::sync::Mutex<Option<String>>,
    pub bearer: String,
    pub unauthorized: AtomicU64,
    pub redeliver_every: u64,
    /// Batches put a second time (and answered).
    pub redelivered: AtomicU64,
    /// Answers to a batch that were not `200` with the body `{}`.
    pub odd_answers: AtomicU64,
}

/// Sends one batch; true when it was answered `200 {}`.
async fn put_batch(http: &reqwest::Client, url: &str, batch: &Value) -> Option<bool> {
    let r = http.put(url).json(batch).send().await.ok()?;
    let status = r.status();
    let body = r.text().await.ok()?;
    Some(status == reqwest::StatusCode::OK && body == "{}")
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    api: Arc<ChatApi>,
    http: reqwest::Client,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let auth_ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", api.bearer));
    let body = super::http_server::body_bytes(req).await;
    let reply = |status: StatusCode, v: Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        *r.status_mut() = status;
        Ok(r)
    };
    if !auth_ok {
        api.unauthorized.fetch_add(1, Relaxed);
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "who are you"}));
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return reply(StatusCode::BAD_REQUEST, json!({"error": "not json"}));
    };
    let n = api.sends.fetch_add(1, Relaxed) + 1;
    if api.fail_every > 0 && n.is_multiple_of(api.fail_every) {
        api.refused.fetch_add(1, Relaxed);
        return reply(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy"}));
    }
    let hook = api.webhook.lock().unwrap().clone();
    if let Some(hook) = hook {
        let d = json!({"deliveries": [{"recipient": format!("u-{}", v["to"]), "ref": v["ref"], "sender": format!("u-{}", v["from"])}]});
        let api = api.clone();
        tokio::spawn(async move {
            if api.redeliver_every == 0 {
                let _ = http.post(hook).json(&d).send().await;
                return;
            }
            let url = format!("{hook}/transactions/t{n}");
            let count = |ok: Option<bool>| {
                if ok == Some(false) {
                    api.odd_answers.fetch_add(1, Relaxed);
                }
                ok.is_some()
            };
            if count(put_batch(&http, &url, &d).await)
                && n.is_multiple_of(api.redeliver_every)
                && count(put_batch(&http, &url, &d).await)
            {
                api.redelivered.fetch_add(1, Relaxed);
            }
        });
    }
    reply(
        StatusCode::ACCEPTED,
        json!({"message": {"id": format!("m{n}")}}),
    )
}

/// Serves on a free loopback port; with `tls`, over TLS with that server configuration.
pub async fn start(api: Arc<ChatApi>, tls: Option<Arc<rustls::ServerConfig>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = reqwest::Client::new();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    super::http_server::serve(listener, acceptor, move |req| {
        handle(req, api.clone(), http.clone())
    });
    port
}

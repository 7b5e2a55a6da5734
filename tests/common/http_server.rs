//! The accept loop of the tests' small HTTP servers (the HTTP messaging API, a hostile API,
//! a signal recorder, a webhook proxy): HTTP/1.1 on a bound listener, each connection in a
//! task of its own, optionally over TLS. What a request means is the caller's handler.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use tokio::net::TcpListener;

/// A request's whole body; empty if the client broke off sending it.
pub async fn body_bytes(req: Request<Incoming>) -> Bytes {
    use http_body_util::BodyExt;
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Serves every connection `listener` accepts, each request through `handle`, until the
/// test's runtime ends.
pub fn serve<F, Fut>(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, handle: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handle, tls) = (handle.clone(), tls.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = builder.serve_connection(TokioIo::new(s), service).await;
                        }
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            });
        }
    });
}

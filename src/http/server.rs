//! Serving a router on a listener, hardened: a cap on open connections, a header read timeout
//! (slowloris), keep-alive, and a graceful drain when `stop` is cancelled. Each request carries
//! the peer address of its socket (`ConnectInfo<SocketAddr>`), and a request that declares both
//! `Transfer-Encoding` and `Content-Length` is answered 400 and its connection closed before it is
//! routed (`framing.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::framing::{Conflict, Watched};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Accepts until `stop`, then stops accepting and lets requests in flight finish (bounded by the
/// caller). Returns when every connection is closed.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken, limits: Limits) {
    let graceful = GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(max = limits.max_connections, "connection limit reached; closing new connection");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conflict = Conflict::new();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(
                TokioIo::new(Watched::new(stream, conflict.clone())),
                connection_service(router.clone(), peer, conflict),
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The service of one connection: numbers its requests (hyper serves them one at a time, in
/// order), answers a conflicting one, and hands the others to the router with the peer address.
fn connection_service(
    router: Router,
    peer: SocketAddr,
    conflict: Conflict,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    let next = Arc::new(AtomicU64::new(0));
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let conflicting = conflict.is(n);
        let router = router.clone();
        async move {
            if conflicting {
                tracing::warn!(peer = %peer, "request with both Transfer-Encoding and Content-Length refused; closing");
                return Ok(conflicting_framing());
            }
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            router.oneshot(req).await
        }
    })
}

/// RFC 9112 §6.1: reject, and close the connection after answering.
fn conflicting_framing() -> Response {
    let body = axum::Json(serde_json::json!({ "error": "conflicting Transfer-Encoding and Content-Length" }));
    let mut res = (StatusCode::BAD_REQUEST, body).into_response();
    res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    // The router's request-id layer never sees this request; the contract wants an id on every answer.
    if let Ok(id) = HeaderValue::try_from(uuid::Uuid::new_v4().simple().to_string()) {
        res.headers_mut().insert(super::REQUEST_ID_HEADER, id);
    }
    res
}

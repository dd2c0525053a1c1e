//! Serving a router on a listener, hardened: a cap on open connections, a header read timeout
//! (slowloris), keep-alive, and a graceful drain when `stop` is cancelled. Each request carries
//! the peer address of its socket (`ConnectInfo<SocketAddr>`), and a request that declares both
//! `Transfer-Encoding` and `Content-Length` is answered 400 and its connection closed before it is
//! routed (`framing.rs`).
//!
//! With TLS ([`crate::tls::Certificates`]) each connection's handshake runs in its own task,
//! bounded by the header timeout, with the certificate current at accept; ALPN then picks
//! HTTP/2 (`h2`) or HTTP/1.1. HTTP/2 needs no framing watch: it has no `Transfer-Encoding`
//! (hyper refuses a request carrying one) and a body whose length contradicts its
//! `content-length` is a stream error. Plain connections are HTTP/1.1 only.

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
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::framing::{Conflict, Watched};
use crate::tls::{ALPN_H2, Certificates};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

/// Accepts until `stop`, then stops accepting and lets requests in flight finish (bounded by the
/// caller). Returns when every connection is closed. With `tls`, serves HTTPS.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
    limits: Limits,
    tls: Option<Arc<Certificates>>,
) {
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
        let (watcher, router) = (graceful.watcher(), router.clone());
        match &tls {
            None => {
                tokio::spawn(async move {
                    http1_connection(stream, router, peer, limits, watcher).await;
                    drop(permit);
                });
            }
            Some(certs) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(certs.current());
                tokio::spawn(async move {
                    https_connection(acceptor, stream, router, peer, limits, watcher).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// One TLS connection: the handshake (within the header timeout), then HTTP/2 or HTTP/1.1 as
/// ALPN agreed (HTTP/1.1 when the client offered neither).
async fn https_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    router: Router,
    peer: SocketAddr,
    limits: Limits,
    watcher: Watcher,
) {
    let stream = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), connection_service(router, peer, Conflict::new()));
        let _ = watcher.watch(conn).await;
    } else {
        http1_connection(stream, router, peer, limits, watcher).await;
    }
}

/// One HTTP/1.1 connection over `io` (TCP, or TLS after the handshake), its framing watched.
async fn http1_connection<IO>(io: IO, router: Router, peer: SocketAddr, limits: Limits, watcher: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conflict = Conflict::new();
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(Watched::new(io, conflict.clone())), connection_service(router, peer, conflict));
    let _ = watcher.watch(conn).await;
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

//! The HTTP client every http destination of a process shares (and `hookgate listen`'s forward).
//!
//! hyper's pooled client over rustls: the platform's trust store (as reqwest's `rustls` feature
//! trusts, so `SSL_CERT_FILE` and `SSL_CERT_DIR` apply), HTTP/2 when the server offers it by ALPN,
//! HTTP/1.1 otherwise. It has none of the layers a destination never uses: it follows no redirect
//! (a 3xx is a failed attempt, never a POST of the event to wherever the answer points) and
//! retries nothing by itself (the delivery loop retries, with backoff, and records each attempt).
//! Those layers cost reqwest, per request, a parse of the URL, two of the headers' copies and a
//! copy of the whole request (docs/PERFORMANCE.md, "Session 12").
//!
//! A destination that the environment's `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` send through a
//! proxy (and `NO_PROXY` does not exempt) goes through reqwest instead, which does the proxying
//! (CONNECT for https, the absolute form for http, the proxy's credentials from its URL).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A response's body, from either path.
pub type Body = Either<hyper::body::Incoming, reqwest::Body>;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    TimedOut,
    /// No connection: refused, unresolvable, a TLS handshake that failed.
    Connect(String),
    Other(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TimedOut => f.write_str("timed out"),
            SendError::Connect(cause) => write!(f, "connection failed: {cause}"),
            SendError::Other(cause) => write!(f, "request failed: {cause}"),
        }
    }
}

#[derive(Clone)]
pub struct Client {
    direct: legacy::Client<Connector, Full<Bytes>>,
    proxied: reqwest::Client,
    proxies: Arc<Matcher>,
}

/// Builds the client. Failing to build it fails the start: there is no fallback to a default
/// client, which would follow redirects.
pub fn client() -> Result<Client, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("cannot read the platform's trusted certificates: {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS for destinations: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let direct = legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    let proxied = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("cannot build the HTTP client for destinations: {e}"))?;
    Ok(Client { direct, proxied, proxies: Arc::new(Matcher::from_env()) })
}

/// How one destination's requests go: straight to it, or through the environment's proxy.
#[derive(Clone)]
pub struct Route {
    client: Client,
    proxied: bool,
}

impl Client {
    /// The route to `uri`, decided once per destination.
    pub fn route(&self, uri: &http::Uri) -> Route {
        Route { client: self.clone(), proxied: self.proxies.intercept(uri).is_some() }
    }
}

impl Route {
    /// Sends `req` and waits up to `timeout` for the response's head.
    pub async fn send(&self, req: http::Request<Bytes>, timeout: Duration) -> Result<http::Response<Body>, SendError> {
        if self.proxied {
            let req = reqwest::Request::try_from(req).map_err(|e| SendError::Other(innermost(&e)))?;
            return match tokio::time::timeout(timeout, self.client.proxied.execute(req)).await {
                Err(_) => Err(SendError::TimedOut),
                Ok(Err(e)) if e.is_timeout() => Err(SendError::TimedOut),
                Ok(Err(e)) if e.is_connect() => Err(SendError::Connect(innermost(&e.without_url()))),
                Ok(Err(e)) => Err(SendError::Other(innermost(&e.without_url()))),
                Ok(Ok(resp)) => Ok(http::Response::from(resp).map(Either::Right)),
            };
        }
        match tokio::time::timeout(timeout, self.client.direct.request(req.map(Full::new))).await {
            Err(_) => Err(SendError::TimedOut),
            Ok(Err(e)) if e.is_connect() => Err(SendError::Connect(innermost(&e))),
            Ok(Err(e)) => Err(SendError::Other(innermost(&e))),
            Ok(Ok(resp)) => Ok(resp.map(Either::Left)),
        }
    }
}

/// The innermost cause of `e`: "connection refused" rather than "client error (Connect)".
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

//! A real HTTP receiver on port 0 that records every request and answers from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// The request's path (and query, if any).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status this receiver answered (or was about to answer, if the caller gave up first).
    pub status: u16,
    /// When it arrived (for rates measured at the receiver).
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    script: VecDeque<(u16, Option<&'static str>)>,
    default: u16,
    delay: Duration,
}

#[derive(Clone)]
pub struct TestReceiver {
    inner: Arc<Mutex<Inner>>,
    addr: SocketAddr,
}

impl TestReceiver {
    /// Answers `default` to every request.
    pub async fn start(default: u16) -> Self {
        Self::scripted(default, &[]).await
    }

    /// Answers the statuses in `script` first (one per request), then `default`.
    pub async fn scripted(default: u16, script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, default, script)
    }

    /// Answers `default` on a given port (a destination that comes back where it was).
    pub async fn start_on(port: u16, default: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        Self::serve(listener, default, &[])
    }

    fn serve(listener: tokio::net::TcpListener, default: u16, script: &[u16]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            default,
            script: script.iter().map(|s| (*s, None)).collect(),
            ..Default::default()
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestReceiver { inner, addr }
    }

    /// The next answer is `status` with a Retry-After header.
    pub fn push_with_retry_after(&self, status: u16, retry_after: &'static str) {
        self.inner.lock().unwrap().script.push_back((status, Some(retry_after)));
    }

    pub fn set_default(&self, status: u16) {
        self.inner.lock().unwrap().default = status;
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().unwrap().received.len()
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, retry_after, delay) = {
        let mut i = inner.lock().unwrap();
        let (s, ra) = i.script.pop_front().unwrap_or((i.default, None));
        let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.to_string());
        i.received.push(Received { method, path, headers, body, status: s, at: std::time::Instant::now() });
        (s, ra, i.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = (StatusCode::from_u16(status).unwrap(), "receiver says hi").into_response();
    if let Some(ra) = retry_after {
        resp.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    resp
}

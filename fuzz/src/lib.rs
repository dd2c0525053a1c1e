//! Fuzz harnesses for the config parser and the ingest request path. Driven by the cargo-fuzz
//! targets in `fuzz_targets/` (nightly) and, within `cargo test`, by `tests/it/fuzz_inputs.rs`
//! (a bounded mutation loop over a seed corpus, stable toolchain). No input may panic.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method, Request};
use tower::ServiceExt;

use hookgate::Config;
use hookgate::ingest::{IngestState, router};
use hookgate::store::Store;

/// Any bytes as config text: `Config::from_toml` returns a config or a non-empty list of
/// problems, and an accepted config keeps the invariants the rest of hookgate relies on.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // Relative paths resolve against a directory with nothing in it; nothing is written.
    let base = Path::new("/nonexistent-hookgate-fuzz");
    match Config::from_toml(&text, Path::new("fuzz.toml"), base) {
        Ok(c) => {
            assert!(c.server.max_body_bytes >= 1);
            assert!(c.server.max_connections >= 1 && c.server.max_concurrent_requests >= 1);
            for s in &c.sources {
                assert!(s.path.starts_with('/') && !s.path.contains(".."), "{:?}", s.path);
                assert!(!s.deliver_to.is_empty());
                for d in &s.deliver_to {
                    assert!(c.destination(d).is_some(), "deliver_to {d:?} resolves");
                }
            }
            for d in &c.destinations {
                assert!(d.lease > d.timeout, "lease outlasts the timeout");
                assert!(d.policy.max_attempts >= 1 && d.policy.max_backoff >= d.policy.initial_backoff);
            }
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "a refused config names at least one problem");
            let _ = e.to_string();
        }
    }
}

/// The secret every harness source verifies with.
pub const SECRET: &str = "fuzz-secret";

/// The sources, by path: three signed with [`SECRET`] (each with another dedupe), one open.
pub const PATHS: [&str; 4] = ["/hook/plain", "/hook/json", "/hook/hdr", "/open"];

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 65536
request_timeout = "2s"
[storage]
url = "sqlite://fuzz.db"
[admin]
listen = "127.0.0.1:0"
[[destinations]]
name = "rx"
type = "http"
url = "http://127.0.0.1:9/"
[[sources]]
name = "plain"
path = "/hook/plain"
verify = { scheme = "hmac-sha256", header = "X-Signature", secret_file = "secret.txt" }
deliver_to = ["rx"]
[[sources]]
name = "json"
path = "/hook/json"
verify = { scheme = "hmac-sha256", header = "X-Signature", secret_file = "secret.txt" }
dedupe = { json_pointer = "/id" }
deliver_to = ["rx"]
[[sources]]
name = "hdr"
path = "/hook/hdr"
verify = { scheme = "hmac-sha256", header = "X-Signature", encoding = "base64", prefix = "sha256=", secret_file = "secret.txt" }
dedupe = { header = "X-Event-Id" }
deliver_to = ["rx"]
[[sources]]
name = "open"
path = "/open"
verify = { scheme = "none", insecure = true }
dedupe = { json_pointer = "/a/0/b" }
deliver_to = ["rx"]
"#;

const METHODS: [Method; 8] =
    [Method::POST, Method::POST, Method::POST, Method::GET, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD];

/// The ingest router on a real SQLite store in a temp dir (on /dev/shm when there is one, so a
/// commit's fsync is cheap), with no listener: requests go through `Router::oneshot`.
pub struct Ingest {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Default for Ingest {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingest {
    /// Sets up the store and the router (once per fuzzing process).
    pub fn new() -> Ingest {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("temp dir");
        std::fs::write(dir.path().join("secret.txt"), SECRET).expect("secret file");
        let config = Config::from_toml(CONFIG, &dir.path().join("hookgate.toml"), dir.path()).expect("harness config");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store = rt.block_on(hookgate::store::open(&config.storage, hookgate::clock::system())).expect("store");
        let router = router(IngestState::new(
            &config,
            store.clone(),
            &hookgate::metrics::Metrics::new(),
            hookgate::clock::system(),
            None,
        ));
        Ingest { rt, router, store, _dir: dir }
    }

    /// One request decoded from `data`:
    /// byte 0: method (bits 0–2), sign the body correctly (bit 3), add a matching content-length (bit 4);
    /// byte 1: the path, one of [`PATHS`] (0–3) or, otherwise, the first line of the rest;
    /// then `name: value` header lines up to an empty line; then the body.
    pub fn run(&self, data: &[u8]) {
        let (flags, pick, mut rest) = match data {
            [a, b, rest @ ..] => (*a, *b, rest),
            _ => return,
        };
        let raw_path;
        let path = match PATHS.get(usize::from(pick)) {
            Some(p) => *p,
            None => {
                let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
                raw_path = String::from_utf8_lossy(&rest[..end]).into_owned();
                rest = rest.get(end + 1..).unwrap_or_default();
                &raw_path
            }
        };
        let mut req = Request::builder().method(METHODS[usize::from(flags & 7)].clone()).uri(path);
        loop {
            let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
            let line = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or_default();
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
            else {
                continue;
            };
            req = req.header(name, value);
        }
        let body = rest.to_vec();
        let signed = flags & 8 != 0;
        if signed {
            let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key length");
            mac.update(&body);
            let sig = mac.finalize().into_bytes();
            let value = if path == "/hook/hdr" {
                format!("sha256={}", base64::engine::general_purpose::STANDARD.encode(sig))
            } else {
                hex::encode(sig)
            };
            if let Some(h) = req.headers_mut() {
                h.insert("x-signature", HeaderValue::from_str(&value).expect("ascii"));
            }
        }
        if flags & 16 != 0 {
            req = req.header("content-length", body.len());
        }
        let Ok(req) = req.body(Body::from(body.clone())) else { return };
        self.rt.block_on(self.check(req, path, signed, &body));
    }

    async fn check(&self, req: Request<Body>, path: &str, signed: bool, body: &[u8]) {
        let resp = self.router.clone().oneshot(req).await.expect("the router is infallible");
        let status = resp.status().as_u16();
        assert!(matches!(status, 200 | 400 | 401 | 404 | 405 | 408 | 413), "status {status} for {path:?}");
        assert!(resp.headers().contains_key("x-request-id"), "every answer has an X-Request-Id");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("answer body");
        if bytes.is_empty() {
            return; // HEAD
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("every answer is JSON");
        if status != 200 {
            assert!(json["error"].is_string(), "{json}");
            return;
        }
        let id = json["event_id"].as_str().expect("an event id");
        assert!(path == "/open" || signed, "200 for a request that was not signed: {path:?}");
        if path == "/hook/json" || path == "/open" {
            assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok(), "a JSON-pointer source stored non-JSON");
        }
        let ev = self.store.get_event(id).await.expect("store answers").expect("the acknowledged event is stored");
        if json["status"] == "queued" {
            assert_eq!(&ev.body[..], body, "the stored body is the body received");
        }
        let headers: serde_json::Value = serde_json::from_str(&ev.headers_json).expect("headers are JSON");
        // Every credential or signature header is stored redacted. (Not a search for the value: a
        // client may copy it into a header of its own, which is then just data; the fuzzer did.)
        for (name, value) in headers.as_object().expect("headers are an object") {
            if hookgate::ingest::redact::is_sensitive(name) {
                assert_eq!(value, "[redacted]", "{name} stored in clear");
            }
        }
    }
}

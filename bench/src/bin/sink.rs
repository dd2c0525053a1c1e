//! A counting receiver for the full-pipeline run: answers 200, counts distinct `webhook-id`s and
//! duplicates, and measures end-to-end latency from the body's `sent_at_us`.
//! usage: sink ADDR   (prints the bound address); GET /stats returns JSON.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use hdrhistogram::Histogram;

struct Stats {
    ids: HashSet<String>,
    duplicates: u64,
    e2e: Histogram<u64>,
}

type Shared = Arc<Mutex<Stats>>;

async fn receive(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> &'static str {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros() as u64;
    let sent = std::str::from_utf8(&body)
        .ok()
        .and_then(|b| b.split("\"sent_at_us\":").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse::<u64>().ok());
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut s = s.lock().unwrap();
    if !s.ids.insert(id) {
        s.duplicates += 1;
    }
    if let Some(sent) = sent {
        let _ = s.e2e.record(now.saturating_sub(sent).max(1));
    }
    "ok"
}

async fn stats(State(s): State<Shared>) -> String {
    let s = s.lock().unwrap();
    serde_json::json!({
        "received": s.ids.len(), "duplicates": s.duplicates,
        "e2e_p50_ms": s.e2e.value_at_quantile(0.5) as f64 / 1000.0,
        "e2e_p99_ms": s.e2e.value_at_quantile(0.99) as f64 / 1000.0,
    })
    .to_string()
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let shared: Shared = Arc::new(Mutex::new(Stats {
        ids: HashSet::new(),
        duplicates: 0,
        e2e: Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap(),
    }));
    let app = Router::new().route("/stats", get(stats)).fallback(receive).with_state(shared);
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

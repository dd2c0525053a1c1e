//! Test support: a hookgate on port 0 with a temp SQLite store, a recording receiver, signing,
//! and a fresh PostgreSQL schema per test when HOOKGATE_TEST_DATABASE_URL is set.

#![allow(dead_code)] // helpers shared by feature files; not every file uses each one

pub mod app;
pub mod config;
pub mod node;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod sign;
pub mod tcp_proxy;
pub mod tls_proxy;

pub use app::{TestApp, binary};
pub use config::{TestConfig, rule};
pub use receiver::TestReceiver;
pub use sign::hmac_hex;

use std::time::Duration;

/// Polls `check` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the series `name{labels}` in a Prometheus text page (labels as rendered).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A POST of `body` to `url`, signed as an [`app::hmac_source`] expects (`X-Signature`, the test secret).
pub fn signed_post(client: &reqwest::Client, url: &str, body: impl Into<String>) -> reqwest::RequestBuilder {
    let body = body.into();
    client.post(url).header("x-signature", hmac_hex(app::SECRET, body.as_bytes())).body(body)
}

//! Destination faults: down for a long stretch, slower than its timeout, flapping. Whatever the
//! destination does, every stored event ends delivered, and nothing is dead that should not be.
//! (429 with Retry-After is in delivery.rs.)

use std::collections::HashMap;
use std::time::Duration;

use crate::support::process::{free_port, serve_on_port, vm_hwm_kib};
use crate::support::{TestApp, TestConfig, TestReceiver, eventually};

/// Retries every 20–200 ms, and so many attempts that nothing goes dead in these tests; one
/// destination `rx` at `url` with `timeout`, fed by the hmac source `s`.
fn patient(url: &str, timeout: &str) -> TestConfig {
    TestConfig::new()
        .delivery("initial_backoff", "20ms")
        .delivery("max_backoff", "200ms")
        .delivery("max_attempts", 100000)
        // Retries alone, as before §8: the breaker (on by default) would hold deliveries back on
        // purpose; its own timeline is tested in destination_state.rs.
        .delivery("circuit_breaker", false)
        .http("rx", url)
        .set("timeout", timeout)
        .hmac_source("s", &["rx"])
}

async fn post_many(app: &TestApp, n: usize, tag: &str) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let (status, json) = app.post_signed("s", format!(r#"{{"tag":"{tag}","n":{i}}}"#).as_bytes()).await;
        assert_eq!(status, 200, "{json}");
        ids.push(json["event_id"].as_str().unwrap().to_string());
    }
    ids
}

async fn statuses(app: &TestApp) -> HashMap<String, u64> {
    app.store.count_by_status().await.unwrap().into_iter().map(|(s, n)| (s.to_string(), n)).collect()
}

/// Successful (2xx) deliveries per webhook-id, as the receiver answered them.
fn successes(rx: &TestReceiver) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in rx.received().iter().filter(|r| (200..300).contains(&r.status)) {
        *out.entry(r.header("webhook-id")).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_down_for_a_long_stretch_then_back_drains_the_backlog() {
    // Reserve a port and leave it closed: connection refused on every attempt.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = TestApp::spawn_config(&patient(&format!("http://127.0.0.1:{port}/hook"), "1s")).await;
    let ids = post_many(&app, 200, "down").await;
    // Down long enough for many failed rounds (about 15 attempts each at a 200 ms cap).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = statuses(&app).await;
    assert_eq!(during["succeeded"], 0);
    assert_eq!(during["dead"], 0, "nothing dies with max_attempts this large: {during:?}");
    let first = app.store.get_event(&ids[0]).await.unwrap().unwrap();
    let tried = first.deliveries[0].attempt_log.len();
    assert!(tried >= 5, "retried while down: {tried} attempts");
    assert!(first.deliveries[0].last_error.as_deref().unwrap_or("").contains("connection"));

    let rx = TestReceiver::start_on(port, 200).await;
    let drained = eventually(Duration::from_secs(15), async || statuses(&app).await["succeeded"] == 200).await;
    let after = statuses(&app).await;
    assert!(drained, "backlog drained after the destination came back: {after:?}");
    assert_eq!(after["dead"], 0);
    let got = successes(&rx);
    for id in &ids {
        assert_eq!(got.get(id), Some(&1), "event {id} delivered exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_slower_than_its_timeout_records_timeouts_then_succeeds() {
    let rx = TestReceiver::start(200).await;
    rx.set_delay(Duration::from_millis(1500));
    let app = TestApp::spawn_config(&patient(&rx.url(), "300ms")).await;
    let ids = post_many(&app, 5, "slow").await;
    let timed_out = eventually(Duration::from_secs(10), async || {
        let ev = app.store.get_event(&ids[0]).await.unwrap().unwrap();
        ev.deliveries[0].attempt_log.iter().filter(|a| a.outcome == "timeout").count() >= 2
    })
    .await;
    assert!(timed_out, "attempts past the timeout are recorded as timeouts");
    assert_eq!(statuses(&app).await["succeeded"], 0, "a timed-out attempt is never a success");

    rx.set_delay(Duration::ZERO);
    assert!(eventually(Duration::from_secs(10), async || statuses(&app).await["succeeded"] == 5).await);
    for id in &ids {
        let ev = app.store.get_event(id).await.unwrap().unwrap();
        let d = &ev.deliveries[0];
        assert_eq!(d.status, "succeeded");
        let log: Vec<&str> = d.attempt_log.iter().map(|a| a.outcome.as_str()).collect();
        assert_eq!(log.last(), Some(&"success"), "{log:?}");
        assert!(log[..log.len() - 1].iter().all(|o| *o == "timeout"), "{log:?}");
        let timeout = d.attempt_log.iter().find(|a| a.outcome == "timeout").unwrap();
        assert!(timeout.duration_ms < 1400, "the attempt was cut at the timeout: {} ms", timeout.duration_ms);
    }
    assert_eq!(statuses(&app).await["dead"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_destination_gets_every_event_exactly_once_after_its_success() {
    let rx = TestReceiver::start(503).await;
    let app = TestApp::spawn_config(&patient(&rx.url(), "1s")).await;
    // The destination flips between failing and healthy every 70 ms while events arrive.
    let flapper = {
        let rx = rx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                rx.set_default(if i % 2 == 0 { 503 } else { 200 });
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
        })
    };
    let ids = post_many(&app, 150, "flap").await;
    let done = eventually(Duration::from_secs(20), async || statuses(&app).await["succeeded"] == 150).await;
    flapper.abort();
    let st = statuses(&app).await;
    assert!(done, "every event delivered despite the flapping: {st:?}");
    assert_eq!(st["dead"], 0);
    let received = rx.received();
    assert!(received.iter().any(|r| r.status == 503), "the destination did fail sometimes");
    let got = successes(&rx);
    for id in &ids {
        assert_eq!(got.get(id), Some(&1), "event {id}: one success, never delivered again after it");
        // The success is the last request for this event.
        let last = received.iter().rev().find(|r| r.header("webhook-id") == *id).unwrap();
        assert_eq!(last.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), received.len(), "nothing delivered after every event succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_error_body_is_not_read_into_memory() {
    use axum::response::IntoResponse;
    static CHUNK: [u8; 64 * 1024] = [b'e'; 64 * 1024];
    // A destination that answers 500 with a 1 GiB body, as fast as loopback goes.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async {
            let chunks = futures::stream::iter(
                std::iter::repeat_n(bytes::Bytes::from_static(&CHUNK), 16 * 1024).map(Ok::<_, std::io::Error>),
            );
            (http::StatusCode::INTERNAL_SERVER_ERROR, axum::body::Body::from_stream(chunks)).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = TestConfig::new()
        .ingest_port(port)
        .delivery("initial_backoff", "50ms")
        .delivery("max_backoff", "50ms")
        .delivery("max_attempts", 2)
        .http("rx", &url)
        .set("timeout", "10s")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let mut child = serve_on_port(&config, port).await;
    let ingest = format!("127.0.0.1:{port}");
    let before = vm_hwm_kib(child.id());
    let client = reqwest::Client::new();
    for i in 0..3 {
        let body = format!("endless {i}");
        let resp = client
            .post(format!("http://{ingest}/hook/s"))
            .header("x-signature", crate::support::hmac_hex(crate::support::app::SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(eventually(Duration::from_secs(20), async || hits.load(std::sync::atomic::Ordering::SeqCst) >= 6).await);
    tokio::time::sleep(Duration::from_millis(2500)).await; // the last attempt reads for as long as it may
    let grown_mib = (vm_hwm_kib(child.id()) - before) / 1024;
    child.kill().unwrap();
    let _ = child.wait();
    assert!(grown_mib < 64, "reading error bodies grew memory by {grown_mib} MiB");
}

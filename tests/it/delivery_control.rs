//! A destination's own limits hold only that destination back: a slow destination with
//! `concurrency = 1` gets its deliveries one at a time, each leased only once it can start, while
//! a fast destination beside it is served at once. Real processes, on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestConfig, TestReceiver, eventually, hmac_hex};

/// The review's setup, scaled down so that it runs in seconds: the slow receiver answers 200
/// after 0.5 s, its destination runs one delivery at a time with a 1 s lease, and 12 events
/// arrive at once. Before claims respected the destination's own concurrency, every one of them
/// was claimed (and its lease started) at once, so most leases ran out while waiting for the
/// permit: the receiver got duplicates, the stale successes were refused, and deliveries went
/// `dead` after 3 attempts.
async fn slow_destination_beside_a_fast_one(database: Option<String>) {
    const EVENTS: usize = 12;
    let slow = TestReceiver::start(200).await;
    slow.set_delay(Duration::from_millis(500));
    let fast = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = TestConfig::new()
        .delivery("concurrency", 16)
        .delivery("max_attempts", 3)
        .delivery("initial_backoff", "100ms")
        .http("slow", &slow.url())
        .set("concurrency", 1)
        .set("timeout", "600ms")
        .set("lease", "1s")
        .http("fast", &fast.url())
        .hmac_source("s", &["slow", "fast"]);
    if database.is_some() {
        config = config.storage("pool_size", 4);
    }
    let config = config.write(dir.path());
    let env: Vec<(&str, &str)> = database.iter().map(|url| ("HOOKGATE_DATABASE_URL", url.as_str())).collect();
    let node = Node::spawn(&config, "all", &env);
    let client = reqwest::Client::new();
    for i in 0..EVENTS {
        let body = format!(r#"{{"id":"evt_{i}"}}"#);
        let sig = hmac_hex(SECRET, body.as_bytes());
        let resp = client.post(node.url("/hook/s")).header("x-signature", sig).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(eventually(Duration::from_secs(10), async || fast.count() == EVENTS).await, "fast destination served");
    // The slow one takes 500 ms an event, one at a time: had the fast one waited behind it, the
    // slow one would have most of them by now.
    let slow_then = slow.count();
    assert!(slow_then <= EVENTS / 2, "the fast destination waited for the slow one ({slow_then} of {EVENTS} there)");
    let all_slow = eventually(Duration::from_secs(30), async || slow.count() >= EVENTS).await;
    assert!(all_slow, "slow destination got {} of {EVENTS}", slow.count());
    // Whatever is still in flight finishes, then every delivery has its final state.
    let settled = eventually(Duration::from_secs(10), async || {
        let page: serde_json::Value =
            client.get(node.admin_url("/api/events?limit=100")).send().await.unwrap().json().await.unwrap();
        page["items"].as_array().unwrap().iter().all(|e| e["status"] == "succeeded")
    })
    .await;
    let dead: serde_json::Value =
        client.get(node.admin_url("/api/deliveries?status=dead")).send().await.unwrap().json().await.unwrap();
    assert_eq!(dead["items"].as_array().unwrap().len(), 0, "no delivered event is dead: {dead}");
    assert!(settled, "every event succeeded");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in slow.received() {
        *seen.entry(r.header("webhook-id")).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!((seen.len(), duplicates), (EVENTS, 0), "each event once at the slow receiver: {seen:?}");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_with_its_own_concurrency_delivers_each_once_on_sqlite() {
    slow_destination_beside_a_fast_one(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_with_its_own_concurrency_delivers_each_once_on_postgres() {
    let Some(database) = fresh_database().await else { return };
    slow_destination_beside_a_fast_one(Some(database)).await;
}

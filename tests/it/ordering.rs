//! Ordering keys from outside (CONTRACT §8): `ordering_key` evaluated at ingest, one delivery per
//! key in flight, in ingest order, under failures and retries with keys interleaving; a dead
//! delivery releases its key; on PostgreSQL with two real processes claiming.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::{TestApp, TestConfig, TestReceiver, eventually, hmac_hex};

/// Per key, the `seq` of each request the receiver got, in arrival order.
fn arrivals_per_key(rx: &TestReceiver) -> HashMap<String, Vec<u64>> {
    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for r in rx.received() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        per_key.entry(body["customer"].as_str().unwrap().to_string()).or_default().push(body["seq"].as_u64().unwrap());
    }
    per_key
}

/// Every key's requests arrive in ingest order: an event's retries, then the next event, never back.
fn assert_in_order(rx: &TestReceiver) {
    for (key, seqs) in arrivals_per_key(rx) {
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "key {key} out of order: {seqs:?}");
    }
}

fn ordered(config: TestConfig, rx: &TestReceiver) -> TestConfig {
    config
        .fast_retries()
        .delivery("max_attempts", 10)
        .delivery("concurrency", 16)
        .http("billing", &rx.url())
        .set("ordering_key", ".body.customer")
        .hmac_source("s", &["billing"])
}

fn event(seq: usize, customers: usize) -> String {
    format!(r#"{{"customer":"c{}","seq":{seq}}}"#, seq % customers)
}

/// 40 events of 5 customers, interleaved; the receiver fails every third request: each key's
/// requests still arrive in ingest order, and all succeed.
#[tokio::test]
async fn each_key_is_delivered_in_ingest_order_through_failures_and_retries() {
    let script: Vec<u16> = (0..60).map(|i| if i % 3 == 0 { 503 } else { 200 }).collect();
    let rx = TestReceiver::scripted(200, &script).await;
    let app = TestApp::spawn_config(&ordered(TestConfig::new(), &rx)).await;
    for seq in 0..40 {
        assert_eq!(app.post_signed("s", event(seq, 5).as_bytes()).await.0, 200);
    }
    let succeeded = async || rx.received().iter().filter(|r| r.status == 200).count() == 40;
    assert!(eventually(Duration::from_secs(20), succeeded).await, "all delivered");
    assert!(rx.received().iter().any(|r| r.status == 503), "there were failures");
    assert_in_order(&rx);
}

/// A key whose first delivery dies (max_attempts = 2, the receiver fails the first two requests)
/// lets the next one go: the dead one releases its key.
#[tokio::test]
async fn a_dead_delivery_releases_its_key() {
    let rx = TestReceiver::scripted(200, &[500, 500]).await;
    let config = ordered(TestConfig::new(), &rx).delivery("max_attempts", 2);
    let app = TestApp::spawn_config(&config).await;
    for seq in 0..3 {
        assert_eq!(app.post_signed("s", event(seq, 1).as_bytes()).await.0, 200);
    }
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 4).await, "{:?}", arrivals_per_key(&rx));
    assert_eq!(arrivals_per_key(&rx)["c0"], [0, 0, 1, 2], "two attempts of the first, then the others in order");
    let dead: Value = reqwest::get(app.admin_url("/api/deliveries?status=dead")).await.unwrap().json().await.unwrap();
    assert_eq!(dead["items"].as_array().unwrap().len(), 1);
}

/// Two real processes on one PostgreSQL database claim the same keyed backlog: the claim query
/// itself keeps one delivery per key in flight, so the order holds across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_each_keys_order_on_postgres() {
    let Some(database) = crate::support::pg::fresh_database().await else { return };
    let script: Vec<u16> = (0..40).map(|i| if i % 4 == 0 { 503 } else { 200 }).collect();
    let rx = TestReceiver::scripted(200, &script).await;
    rx.set_delay(Duration::from_millis(5));
    let dir = tempfile::tempdir().unwrap();
    let config = ordered(TestConfig::new().storage("pool_size", 4), &rx).write(dir.path());
    let env = [("HOOKGATE_DATABASE_URL", database.as_str())];
    let (a, b) = (Node::spawn(&config, "all", &env), Node::spawn(&config, "all", &env));
    let client = reqwest::Client::new();
    for seq in 0..60 {
        let body = event(seq, 4);
        let sig = hmac_hex(SECRET, body.as_bytes());
        let node = if seq % 2 == 0 { &a } else { &b };
        let resp = client.post(node.url("/hook/s")).header("x-signature", sig).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let succeeded = async || rx.received().iter().filter(|r| r.status == 200).count() == 60;
    assert!(eventually(Duration::from_secs(30), succeeded).await, "all delivered");
    assert_in_order(&rx);
    let per_node = [a.count_logged("delivered"), b.count_logged("delivered")];
    eprintln!("deliveries per node: {per_node:?}");
}

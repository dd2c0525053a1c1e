//! Several hookgate processes on one PostgreSQL database: dedupe across nodes, each delivery
//! once, a node killed mid-delivery, the ingest/worker split. Real processes of the binary, each
//! test on a fresh schema. Skipped without HOOKGATE_TEST_DATABASE_URL (and failing in CI).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestConfig, TestReceiver, eventually, hmac_hex};

/// A deployment's shared parts: the config every node reads and the database they share.
struct Cluster {
    _dir: TempDir,
    config: PathBuf,
    database: String,
}

impl Cluster {
    /// `config` on a fresh database; None when no PostgreSQL is configured for tests.
    async fn new(config: TestConfig) -> Option<Cluster> {
        let database = fresh_database().await?;
        let dir = tempfile::tempdir().unwrap();
        // Small pools: several tests with three nodes each share the server's max_connections.
        let config = config.storage("pool_size", 4).write(dir.path());
        Some(Cluster { _dir: dir, config, database })
    }

    fn node(&self, role: &str) -> Node {
        Node::spawn(&self.config, role, &[("HOOKGATE_DATABASE_URL", &self.database)])
    }
}

/// POSTs `body` signed to `node`; returns (status, "queued"/"duplicate", event id).
async fn post(client: &reqwest::Client, node: &Node, body: String) -> (u16, String, String) {
    let sig = hmac_hex(SECRET, body.as_bytes());
    let resp = client.post(node.url("/hook/s")).header("x-signature", sig).body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, json["status"].as_str().unwrap_or("").into(), json["event_id"].as_str().unwrap_or("").into())
}

/// How many times the receiver got each event id.
fn per_event(rx: &TestReceiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.received() {
        *seen.entry(r.header("webhook-id")).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_dedupe_key_posted_to_three_nodes_at_once_makes_one_event() {
    let rx = TestReceiver::start(200).await;
    let Some(cluster) = Cluster::new(TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"])).await else {
        return;
    };
    let nodes = [cluster.node("all"), cluster.node("all"), cluster.node("all")];
    let client = reqwest::Client::new();
    // The generic scheme dedupes on the body's SHA-256: one body, 30 retries, 3 nodes, all at once.
    let posts = (0..30).map(|i| post(&client, &nodes[i % 3], r#"{"id":"evt_1"}"#.to_string()));
    let answers = futures::future::join_all(posts).await;
    assert!(answers.iter().all(|(status, _, _)| *status == 200), "{answers:?}");
    let queued = answers.iter().filter(|(_, s, _)| s == "queued").count();
    assert_eq!(queued, 1, "exactly one node stored it: {answers:?}");
    let ids: HashSet<&String> = answers.iter().map(|(_, _, id)| id).collect();
    assert_eq!(ids.len(), 1, "every answer names the same event: {answers:?}");
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await, "delivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 1, "and delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_three_nodes_is_delivered_once_per_destination() {
    let (a, b) = (TestReceiver::start(200).await, TestReceiver::start(200).await);
    // Slow enough that no single node can take the whole queue before the others wake up.
    a.set_delay(Duration::from_millis(50));
    b.set_delay(Duration::from_millis(50));
    let Some(cluster) = Cluster::new(
        TestConfig::new()
            .delivery("concurrency", 16)
            .http("a", &a.url())
            .http("b", &b.url())
            .hmac_source("s", &["a", "b"]),
    )
    .await
    else {
        return;
    };
    let nodes = [cluster.node("all"), cluster.node("all"), cluster.node("all")];
    let client = reqwest::Client::new();
    let posts = (0..300).map(|i| post(&client, &nodes[i % 3], format!(r#"{{"n":{i}}}"#)));
    let answers = futures::future::join_all(posts).await;
    assert!(answers.iter().all(|(status, s, _)| *status == 200 && s == "queued"), "{answers:?}");
    let acked: HashSet<String> = answers.into_iter().map(|(_, _, id)| id).collect();
    assert_eq!(acked.len(), 300);
    for (name, rx) in [("a", &a), ("b", &b)] {
        let all = eventually(Duration::from_secs(60), async || per_event(rx).len() == 300).await;
        assert!(all, "{name}: {} of 300 events delivered", per_event(rx).len());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (name, rx) in [("a", &a), ("b", &b)] {
        let seen = per_event(rx);
        let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dupes.is_empty(), "{name}: delivered more than once: {dupes:?}");
        assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), acked, "{name}");
    }
    let busy = nodes.iter().filter(|n| n.count_logged("delivered") > 0).count();
    assert!(
        busy >= 2,
        "the nodes share the work: {:?}",
        nodes.iter().map(|n| n.count_logged("delivered")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_delivery_loses_no_acknowledged_event() {
    let rx = TestReceiver::start(200).await;
    // Slow: about 6 s of work for the three nodes, so the killed one has deliveries in flight.
    rx.set_delay(Duration::from_millis(500));
    // A short lease (timeout below it) so the dead node's claims come back quickly.
    let Some(cluster) = Cluster::new(
        TestConfig::new()
            .delivery("lease", "2s")
            .delivery("concurrency", 16)
            .http("rx", &rx.url())
            .set("timeout", "1s")
            .hmac_source("s", &["rx"]),
    )
    .await
    else {
        return;
    };
    let mut nodes = [cluster.node("all"), cluster.node("all"), cluster.node("all")];
    let client = reqwest::Client::new();
    let posts = (0..600).map(|i| post(&client, &nodes[i % 3], format!(r#"{{"n":{i}}}"#)));
    let answers = futures::future::join_all(posts).await;
    let acked: HashSet<String> =
        answers.into_iter().filter(|(status, _, _)| *status == 200).map(|(_, _, id)| id).collect();
    assert_eq!(acked.len(), 600, "all acknowledged before the kill");
    // Once node 0 has finished a round it has claimed the next one: kill it without warning.
    assert!(eventually(Duration::from_secs(10), async || nodes[0].count_logged("delivered") > 0).await);
    nodes[0].kill_9();
    let killed_at = Instant::now();
    let all =
        eventually(Duration::from_secs(60), async || acked.iter().all(|id| per_event(&rx).contains_key(id))).await;
    let seen = per_event(&rx);
    let lost: Vec<&String> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(all, "{} of {} acknowledged events never delivered: {lost:?}", lost.len(), acked.len());
    // At-least-once: what the dead node had sent but not recorded, a survivor sends again once
    // the lease runs out. That there are some shows the kill hit deliveries in flight.
    let dupes = seen.values().filter(|n| **n > 1).count();
    eprintln!("all delivered {:?} after the kill; {dupes} delivered twice", killed_at.elapsed());
    assert!(dupes > 0, "node 0 had deliveries in flight when it was killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_roles_split_the_work() {
    let rx = TestReceiver::start(200).await;
    let Some(cluster) = Cluster::new(TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"])).await else {
        return;
    };
    let ingest = cluster.node("ingest");
    let client = reqwest::Client::new();
    for i in 0..20 {
        let (status, s, _) = post(&client, &ingest, format!(r#"{{"n":{i}}}"#)).await;
        assert_eq!((status, s.as_str()), (200, "queued"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0, "an ingest node does not deliver");

    let worker = cluster.node("worker");
    assert!(worker.ingest.is_none(), "a worker has no ingest listener");
    let ready = client.get(worker.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "a worker answers /readyz on its admin listener");
    assert!(eventually(Duration::from_secs(15), async || rx.count() == 20).await, "the worker delivers the backlog");

    // Idle now, the worker sleeps up to 5 s between polls; NOTIFY from the ingest node wakes it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    post(&client, &ingest, r#"{"n":"late"}"#.to_string()).await;
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 21).await, "{}", worker.log());
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "woken by NOTIFY, not by the poll: {:?}",
        started.elapsed()
    );
}

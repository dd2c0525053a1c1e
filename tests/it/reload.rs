//! Reloading the config while serving (SIGHUP, `POST /api/reload`), on a real `hookgate serve`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::node::Node;
use crate::support::{TestConfig, TestReceiver, eventually, metric, signed_post};

async fn reload(client: &reqwest::Client, node: &Node) -> (u16, serde_json::Value) {
    let resp = client.post(node.admin_url("/api/reload")).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn reloads(client: &reqwest::Client, node: &Node, result: &str) -> f64 {
    let text = client.get(node.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    metric(&text, &format!("hookgate_config_reloads_total{{result=\"{result}\"}}")).unwrap_or(-1.0)
}

#[tokio::test]
async fn a_source_and_a_destination_added_by_reload_work_without_a_restart() {
    let (rx1, rx2) = (TestReceiver::start(200).await, TestReceiver::start(200).await);
    let dir = tempfile::tempdir().unwrap();
    let one = TestConfig::new().http("rx1", &rx1.url()).hmac_source("s", &["rx1"]);
    let config = one.clone().write(dir.path());
    let node = Node::spawn(&config, "all", &[]);
    let client = reqwest::Client::new();
    assert_eq!(reloads(&client, &node, "ok").await, 0.0);
    assert_eq!(signed_post(&client, &node.url("/hook/t"), "{}").send().await.unwrap().status(), 404);

    // A destination and a source to it; and a key that needs a restart.
    let two = one.clone().http("rx2", &rx2.url()).hmac_source("t", &["rx2"]).server("max_connections", 50);
    two.write(dir.path());
    assert_eq!(reload(&client, &node).await, (200, serde_json::json!({ "status": "reloaded" })));
    let resp = signed_post(&client, &node.url("/hook/t"), r#"{"to":"rx2"}"#).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(10), async || rx2.count() == 1).await, "delivered to rx2 after the reload");
    assert_eq!(signed_post(&client, &node.url("/hook/s"), r#"{"to":"rx1"}"#).send().await.unwrap().status(), 200);
    assert!(eventually(Duration::from_secs(10), async || rx1.count() == 1).await);
    let log = node.log();
    assert!(
        log.lines().any(|l| l.contains("need a restart") && l.contains("server.max_connections")),
        "the restart key is named:\n{log}"
    );

    // SIGHUP does the same: the source goes away again.
    one.write(dir.path());
    node.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(eventually(Duration::from_secs(10), async || reloads(&client, &node, "ok").await == 2.0).await);
    assert_eq!(signed_post(&client, &node.url("/hook/t"), "{}").send().await.unwrap().status(), 404);
    assert_eq!(reloads(&client, &node, "error").await, 0.0);
}

#[tokio::test]
async fn an_invalid_reload_changes_nothing_and_lists_every_problem() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let good = TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"]);
    let config = good.clone().write(dir.path());
    let node = Node::spawn(&config, "all", &[]);
    let client = reqwest::Client::new();
    // Two problems: a source to a destination that does not exist, and a bad duration.
    good.clone().hmac_source("t", &["nowhere"]).delivery("initial_backoff", "soon").write(dir.path());
    let (status, json) = reload(&client, &node).await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["error"], "invalid config");
    let problems: Vec<&str> = json["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(problems.iter().any(|p| p.contains("unknown destination \"nowhere\"")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("delivery.initial_backoff")), "{problems:?}");
    // Nothing changed: the old source works, the new one does not exist.
    assert_eq!(signed_post(&client, &node.url("/hook/s"), "{}").send().await.unwrap().status(), 200);
    assert_eq!(signed_post(&client, &node.url("/hook/t"), "{}").send().await.unwrap().status(), 404);
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await);
    assert_eq!(reloads(&client, &node, "error").await, 1.0);
    assert_eq!(reloads(&client, &node, "ok").await, 0.0);
    assert!(node.count_logged("config not reloaded") >= 2, "every problem is logged:\n{}", node.log());
}

/// Four clients post signed events without pause while the config is reloaded 20 times (a
/// second source comes and goes): every request is answered 200, none fails to connect.
#[tokio::test]
async fn a_load_across_20_reloads_has_no_error() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let base = TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"]);
    let config = base.clone().write(dir.path());
    let node = Node::spawn(&config, "all", &[]);
    let url = node.url("/hook/s");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, stop, answered) = (url.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut failures = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    match signed_post(&client, &url, format!(r#"{{"c":{c},"n":{n}}}"#)).send().await {
                        Ok(r) if r.status() == 200 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.push(format!("status {}", r.status())),
                        Err(e) => failures.push(format!("error {e}")),
                    }
                }
                failures
            })
        })
        .collect();
    let client = reqwest::Client::new();
    for i in 0..20 {
        let next = if i % 2 == 0 { base.clone().hmac_source("u", &["rx"]) } else { base.clone() };
        next.write(dir.path());
        assert_eq!(reload(&client, &node).await.0, 200, "reload {i}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    let answered = answered.load(Ordering::Relaxed);
    assert!(failures.is_empty(), "{} failures of {answered}: {:?}", failures.len(), &failures[..failures.len().min(5)]);
    assert!(answered > 100, "the load ran through the reloads ({answered} requests)");
    assert_eq!(reloads(&client, &node, "ok").await, 20.0);
    // Every acknowledged event is delivered.
    assert!(eventually(Duration::from_secs(30), async || rx.count() >= answered).await, "{} of {answered}", rx.count());
}

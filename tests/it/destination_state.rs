//! Delivery control from outside (CONTRACT §8): pause and resume through the admin API and the
//! CLI, stored across a restart; the circuit breaker's timeline on a manual clock, counted at a
//! real receiver; a rate limit measured at a real receiver over a backlog.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hookgate::clock::ManualClock;
use serde_json::Value;

use crate::support::app::{SECRET, binary};
use crate::support::node::Node;
use crate::support::{TestApp, TestConfig, TestReceiver, eventually, hmac_hex, metric};

async fn destinations(app: &TestApp) -> Vec<Value> {
    let v: Value = reqwest::get(app.admin_url("/api/destinations")).await.unwrap().json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}

async fn destination(app: &TestApp, name: &str) -> Value {
    destinations(app).await.into_iter().find(|d| d["name"] == name).unwrap()
}

/// `hookgate destinations ...` against `app`'s admin API; (exit code, stdout).
async fn cli(app: &TestApp, args: &[&str]) -> (i32, String) {
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--admin-url".to_string(), app.admin_url("")]);
    tokio::task::spawn_blocking(move || {
        let out =
            Command::new(binary()).arg("destinations").args(&args).env_remove("HOOKGATE_ADMIN_TOKEN").output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await
    .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(app.admin_url("/metrics")).await.unwrap().text().await.unwrap()
}

/// A paused destination gets no attempts, its deliveries wait as `pending`, the pause survives a
/// restart, and resuming (from the CLI) delivers them; the other destination is never held back.
#[tokio::test]
async fn a_pause_holds_across_a_restart_until_resumed() {
    let held = TestReceiver::start(200).await;
    let other = TestReceiver::start(200).await;
    let config =
        TestConfig::new().http("held", &held.url()).http("other", &other.url()).hmac_source("s", &["held", "other"]);
    let app = TestApp::spawn_config(&config).await;
    let resp = reqwest::Client::new().post(app.admin_url("/api/destinations/held/pause")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["state"], "paused");
    let missing = reqwest::Client::new().post(app.admin_url("/api/destinations/nope/pause")).send().await.unwrap();
    assert_eq!(missing.status(), 404, "only destinations of the config");
    for i in 0..3 {
        assert_eq!(app.post_signed("s", format!(r#"{{"n":{i}}}"#).as_bytes()).await.0, 200);
    }
    assert!(eventually(Duration::from_secs(10), async || other.count() == 3).await, "the other destination is served");
    let d = destination(&app, "held").await;
    assert_eq!(
        (d["state"].as_str(), d["pending"].as_u64(), d["type"].as_str()),
        (Some("paused"), Some(3), Some("http"))
    );
    assert_eq!(
        metric(&metrics(&app).await, r#"hookgate_destination_state{destination="held",state="paused"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics(&app).await, r#"hookgate_destination_state{destination="held",state="active"}"#),
        Some(0.0)
    );

    let dir = app.stop().await;
    let app = TestApp::start_in(dir, vec![]).await;
    let (code, out) = cli(&app, &["list"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("held") && l.contains("paused")),
        "still paused after the restart:\n{out}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.count(), 0, "no attempt while paused");

    let (code, out) = cli(&app, &["resume", "held"]).await;
    assert_eq!((code, out.trim()), (0, "held is active"));
    assert!(eventually(Duration::from_secs(10), async || held.count() == 3).await, "resumed: delivered");
    let d = destination(&app, "held").await;
    assert!(
        eventually(Duration::from_secs(5), async || destination(&app, "held").await["last_success_at"].is_string())
            .await,
        "{d}"
    );
    assert!(held.received().iter().all(|r| r.header("x-hookgate-attempt") == "1"), "waiting was no attempt");
}

/// The breaker on a manual clock, with `concurrency = 1` so that attempts come one at a time:
/// three failures open it, no attempt reaches the receiver during the cooldown (however long the
/// clock moves within it), then one trial; it fails, the cooldown doubles; the next trial
/// succeeds and everything held back is delivered: an outage far longer than max_attempts ×
/// backoff dead-letters nothing.
#[tokio::test]
async fn the_breaker_opens_holds_trials_and_closes_on_the_clock() {
    let rx = TestReceiver::start(503).await;
    let config = TestConfig::new()
        .delivery("max_attempts", 3)
        .delivery("initial_backoff", "1s")
        .delivery("max_backoff", "1h")
        .http("d", &rx.url())
        .set("concurrency", 1)
        .set(
            "circuit_breaker",
            toml::Value::Table(toml::toml! { failures = 3
            cooldown = "1m" }),
        )
        .hmac_source("s", &["d"]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    config.write(dir.path());
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_924_992_000)));
    let app = TestApp::start_with_clock(dir, vec![], clock.clone()).await;
    let advance = |by: Duration| {
        clock.advance(by);
        app.store.wakeup().notify_one();
    };
    for i in 0..5 {
        assert_eq!(app.post_signed("s", format!(r#"{{"n":{i}}}"#).as_bytes()).await.0, 200);
    }
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 3).await, "three failures");
    assert!(eventually(Duration::from_secs(5), async || destination(&app, "d").await["state"] == "open").await);
    // The cooldown: retries fall due (1 s backoff) but nothing is attempted.
    for _ in 0..5 {
        advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rx.count(), 3, "no attempts during the cooldown");
    advance(Duration::from_secs(11)); // 61 s after opening
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 4).await, "one trial");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 4, "only one");
    assert!(eventually(Duration::from_secs(5), async || destination(&app, "d").await["state"] == "open").await);
    // Reopened for 2 min: a minute on, still nothing.
    advance(Duration::from_secs(61));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 4, "the cooldown doubled");
    rx.set_default(200);
    advance(Duration::from_secs(60));
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 5 + 4).await, "the trial closes it; all go");
    assert!(eventually(Duration::from_secs(5), async || destination(&app, "d").await["state"] == "active").await);
    let d = destination(&app, "d").await;
    assert_eq!((d["dead"].as_u64(), d["pending"].as_u64(), d["failed"].as_u64()), (Some(0), Some(0), Some(0)), "{d}");
    let text = metrics(&app).await;
    assert_eq!(metric(&text, r#"hookgate_circuit_opened_total{destination="d"}"#), Some(2.0), "opened, reopened");
}

/// `rate_limit = { per_second = 10, burst = 5 }` over a backlog of 40 (queued while paused, then
/// resumed), measured at the receiver: never more than the rate allows over any window from the
/// first arrival (bounds generous), and an unlimited destination beside it is not held back.
#[tokio::test]
async fn a_rate_limit_holds_at_the_receiver_and_slows_no_other_destination() {
    const N: usize = 40;
    let limited = TestReceiver::start(200).await;
    let free = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .http("limited", &limited.url())
        .set(
            "rate_limit",
            toml::Value::Table(toml::toml! { per_second = 10
            burst = 5 }),
        )
        .http("free", &free.url())
        .hmac_source("s", &["limited", "free"]);
    let app = TestApp::spawn_config(&config).await;
    let (code, _) = cli(&app, &["pause", "limited"]).await;
    assert_eq!(code, 0);
    for i in 0..N {
        assert_eq!(app.post_signed("s", format!(r#"{{"n":{i}}}"#).as_bytes()).await.0, 200);
    }
    assert_eq!(destination(&app, "limited").await["pending"], N as u64);
    let (code, _) = cli(&app, &["resume", "limited"]).await;
    assert_eq!(code, 0);
    // While the limited one drains, more events: the free destination gets them at once.
    for i in 0..10 {
        assert_eq!(app.post_signed("s", format!(r#"{{"more":{i}}}"#).as_bytes()).await.0, 200);
    }
    assert!(eventually(Duration::from_secs(10), async || free.count() == N + 10).await);
    assert!(limited.count() < N, "the free destination was done first: {} of {N}", limited.count());
    assert!(eventually(Duration::from_secs(20), async || limited.count() == N + 10).await, "all delivered");
    assert_rate(&limited, 10.0, 5.0);
    assert!(limited.received().iter().all(|r| r.header("x-hookgate-attempt") == "1"), "waiting was no attempt");
}

/// Rate arrivals must keep to: at most `per_second` × 1.2 per second of the window from the first
/// arrival, plus the burst (and one for the edges).
fn assert_rate(rx: &TestReceiver, per_second: f64, burst: f64) {
    let arrivals: Vec<_> = rx.received().iter().map(|r| r.at).collect();
    for (i, at) in arrivals.iter().enumerate() {
        let window = at.duration_since(arrivals[0]).as_secs_f64();
        let allowed = per_second * 1.2 * window + burst + 1.0;
        assert!((i + 1) as f64 <= allowed, "{} arrivals within {window:.2}s (allowed {allowed:.1})", i + 1);
    }
    let span = arrivals[arrivals.len() - 1].duration_since(arrivals[0]).as_secs_f64();
    eprintln!(
        "{} arrivals in {span:.2}s: {:.1}/s after the burst",
        arrivals.len(),
        (arrivals.len() as f64 - burst) / span
    );
}

/// Two real processes on one PostgreSQL database: the pause made on one node holds on the other,
/// and the rate limit is one bucket for both (the token bucket row, locked by each claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_pause_and_the_rate_limit_on_postgres() {
    const N: usize = 30;
    let Some(database) = crate::support::pg::fresh_database().await else { return };
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .storage("pool_size", 4)
        .http("limited", &rx.url())
        .set(
            "rate_limit",
            toml::Value::Table(toml::toml! { per_second = 10
            burst = 5 }),
        )
        .hmac_source("s", &["limited"])
        .write(dir.path());
    let env = [("HOOKGATE_DATABASE_URL", database.as_str())];
    let (a, b) = (Node::spawn(&config, "all", &env), Node::spawn(&config, "all", &env));
    let client = reqwest::Client::new();
    assert_eq!(client.post(a.admin_url("/api/destinations/limited/pause")).send().await.unwrap().status(), 200);
    for i in 0..N {
        let body = format!(r#"{{"n":{i}}}"#);
        let sig = hmac_hex(SECRET, body.as_bytes());
        let node = if i % 2 == 0 { &a } else { &b };
        let resp = client.post(node.url("/hook/s")).header("x-signature", sig).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.count(), 0, "paused on both nodes");
    let listed: Value = client.get(b.admin_url("/api/destinations")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["items"][0]["state"], "paused", "node b sees node a's pause");
    assert_eq!(client.post(b.admin_url("/api/destinations/limited/resume")).send().await.unwrap().status(), 200);
    assert!(eventually(Duration::from_secs(20), async || rx.count() == N).await, "all delivered");
    assert_rate(&rx, 10.0, 5.0);
    // A delivery is logged just after its receiver answered: wait for the last lines.
    let logged = || a.count_logged("delivered") + b.count_logged("delivered");
    assert!(eventually(Duration::from_secs(5), async || logged() == N).await, "logged {} of {N}", logged());
    eprintln!("deliveries per node: {:?}", [a.count_logged("delivered"), b.count_logged("delivered")]);
}

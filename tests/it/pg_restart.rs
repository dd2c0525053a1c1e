//! PostgreSQL stops and starts again under traffic: ingest answers 503 (never 200 for what is not
//! stored, never a hang) while it is down, everything acknowledged is delivered, and the nodes
//! recover by themselves. It restarts the shared server, so it runs only on demand:
//! `scripts/pg-restart-test.sh` (which sets HOOKGATE_PG_RESTART_TEST=1 and the stop/start
//! commands). In a normal `cargo test` it returns at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestConfig, TestReceiver, eventually, hmac_hex};

fn run(var: &str) {
    let cmd = std::env::var(var).unwrap_or_else(|_| panic!("{var} must name a shell command"));
    let status = std::process::Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
    assert!(status.success(), "{cmd}: {status}");
}

#[derive(Default)]
struct Traffic {
    acked: Vec<String>,
    unavailable: usize,
    other: Vec<String>,
    slowest: Duration,
    /// When the first 503 came, and the first 200 after it.
    first_503: Option<Instant>,
    first_200_after: Option<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_during_traffic_loses_nothing_and_recovers_by_itself() {
    if std::env::var("HOOKGATE_PG_RESTART_TEST").is_err() {
        eprintln!("on demand only: scripts/pg-restart-test.sh");
        return;
    }
    let Some(database) = fresh_database().await else { panic!("HOOKGATE_TEST_DATABASE_URL is required") };
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .storage("pool_size", 4)
        .delivery("initial_backoff", "100ms")
        .delivery("max_backoff", "1s")
        .delivery("max_attempts", 100)
        .http("rx", &rx.url())
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let env = [("HOOKGATE_DATABASE_URL", database.as_str())];
    let nodes = Arc::new([Node::spawn(&config, "all", &env), Node::spawn(&config, "all", &env)]);

    // Steady traffic, bounded in count and time: one request every 20 ms for 25 s at most.
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sender = {
        let (traffic, stop, nodes) = (traffic.clone(), stop.clone(), nodes.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let mut tasks = Vec::new();
            for i in 0..1250 {
                if stop.is_cancelled() {
                    break;
                }
                let (client, traffic, url) = (client.clone(), traffic.clone(), nodes[i % 2].url("/hook/s"));
                tasks.push(tokio::spawn(async move {
                    let body = format!(r#"{{"n":{i}}}"#);
                    let started = Instant::now();
                    let resp = client
                        .post(url)
                        .header("x-signature", hmac_hex(SECRET, body.as_bytes()))
                        .body(body)
                        .send()
                        .await;
                    let took = started.elapsed();
                    // Ok(Some(id)) acknowledged, Ok(None) 503, Err(what) anything else.
                    let outcome = match resp {
                        Ok(r) if r.status() == 200 => {
                            let json: serde_json::Value = r.json().await.unwrap();
                            Ok(Some(json["event_id"].as_str().unwrap().to_string()))
                        }
                        Ok(r) if r.status() == 503 => Ok(None),
                        Ok(r) => Err(r.status().to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let mut t = traffic.lock().unwrap();
                    t.slowest = t.slowest.max(took);
                    match outcome {
                        Ok(Some(id)) => {
                            if t.first_503.is_some() && t.first_200_after.is_none() {
                                t.first_200_after = Some(Instant::now());
                            }
                            t.acked.push(id);
                        }
                        Ok(None) => {
                            t.unavailable += 1;
                            t.first_503.get_or_insert_with(Instant::now);
                        }
                        Err(what) => t.other.push(what),
                    }
                }));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            futures::future::join_all(tasks).await;
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!("stopping PostgreSQL");
    run("HOOKGATE_PG_STOP");
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    for node in nodes.iter() {
        let ready = client.get(node.admin_url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503, "/readyz while the database is down");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    eprintln!("starting PostgreSQL after {:?}", stopped.elapsed());
    run("HOOKGATE_PG_START");
    let restarted = Instant::now();
    let ready = eventually(Duration::from_secs(30), async || {
        let mut all = true;
        for node in nodes.iter() {
            all &= client.get(node.admin_url("/readyz")).send().await.is_ok_and(|r| r.status() == 200);
        }
        all
    })
    .await;
    assert!(ready, "/readyz back to 200 without restarting hookgate");
    eprintln!("ready again {:?} after the start", restarted.elapsed());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    sender.await.unwrap();

    let (acked, unavailable, other, slowest, recovered) = {
        let t = traffic.lock().unwrap();
        let recovered = t.first_200_after.map(|at| at.saturating_duration_since(restarted));
        let window = t.first_503.zip(t.first_200_after).map(|(a, b)| b.saturating_duration_since(a));
        eprintln!(
            "first 503 {:?} after the stop; 503s for {window:?}",
            t.first_503.map(|at| at.saturating_duration_since(stopped))
        );
        (t.acked.clone(), t.unavailable, t.other.clone(), t.slowest, recovered)
    };
    eprintln!(
        "{} acknowledged, {unavailable} answered 503, other: {other:?}, slowest answer {slowest:?}, \
         first 200 after the restart: {recovered:?} after the start",
        acked.len()
    );
    assert!(unavailable > 0, "503 while the database was down");
    assert!(other.is_empty(), "only 200 or 503: {other:?}");
    assert!(slowest < Duration::from_secs(15), "no request hung: {slowest:?}");
    assert!(recovered.is_some(), "ingest answers 200 again after the restart");

    let all = eventually(Duration::from_secs(60), async || {
        let got: HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
        acked.iter().all(|id| got.contains(id))
    })
    .await;
    let got: HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !got.contains(*id)).collect();
    assert!(all, "{} of {} acknowledged events lost: {lost:?}", lost.len(), acked.len());
    for node in nodes.iter() {
        let again =
            eventually(Duration::from_secs(10), async || node.count_logged("listening for work notifications") >= 2);
        assert!(again.await, "the notification listener reconnected");
    }
    eprintln!("all {} acknowledged events delivered ({} requests received)", acked.len(), rx.count());
}

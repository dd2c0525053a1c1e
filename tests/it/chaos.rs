//! kill -9 chaos: cycles of { continuous signed load, deliveries in flight to a receiver that is
//! sometimes slow (sometimes slower than the destination's timeout) → kill -9 at a random moment
//! → restart }. Clients retry what got no answer, as providers do. At the end every acknowledged
//! event is delivered at least once, no retried request became a second event, and the figures
//! (sent, acknowledged, delivered, lost, duplicate deliveries) are printed as a table row.
//!
//! The default test runs 3 short cycles. `scripts/chaos-kill.sh` runs the same code on the release
//! build with more cycles: HOOKGATE_CHAOS_CYCLES, HOOKGATE_CHAOS_CLIENTS, HOOKGATE_CHAOS_REPORT
//! (a file the row is appended to), HOOKGATE_CHAOS_TIMEOUTS=0 (the receiver stays within the
//! destination's timeout, so every duplicate delivery is the kill's doing), HOOKGATE_CHAOS_SIGNAL=mixed
//! (every other cycle ends with SIGTERM instead, which must exit 0).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookgate::store::Store;

use crate::support::app::SECRET;
use crate::support::process::free_port;
use crate::support::{TestConfig, TestReceiver, binary, eventually, hmac_hex, metric};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn write_config(dir: &Path, port: u16, admin: u16, rx_url: &str) -> std::path::PathBuf {
    TestConfig::new()
        .ingest_port(port)
        .server("shutdown_grace", "10s")
        .admin_port(admin)
        .delivery("initial_backoff", "50ms")
        .delivery("max_backoff", "500ms")
        .delivery("max_attempts", 100000)
        .http("rx", rx_url)
        .set("timeout", "1s")
        .hmac_source("s", &["rx"])
        .set("dedupe", toml::toml! { json_pointer = "/id" })
        .write(dir)
}

/// Deliveries pending, in flight or failed (waiting for a retry), as `/metrics` counts them.
async fn unfinished(admin: u16) -> Option<f64> {
    let page = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await.ok()?.text().await.ok()?;
    ["pending", "in_flight", "failed"]
        .iter()
        .map(|s| metric(&page, &format!("hookgate_deliveries{{status=\"{s}\"}}")))
        .sum()
}

/// Starts `hookgate serve` (its log appended to `log`) and waits until the ingest port answers.
/// While hookgate was down, another socket on this machine may have taken its port for a moment
/// (an outgoing connection's ephemeral port); then it exits at once, and it is started again.
async fn start(config: &Path, log: &Path, port: u16) -> Child {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    for _ in 0..5 {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("HOOKGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut exited = false;
        let ready = eventually(Duration::from_secs(30), async || {
            exited = child.try_wait().unwrap().is_some();
            exited || client.get(&url).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
        if ready && !exited {
            return child;
        }
        let _ = child.kill();
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("hookgate did not start; see {}", config.parent().unwrap().display());
}

/// What the clients saw.
#[derive(Default)]
struct Clients {
    sent: AtomicU64,
    /// body id → (event id, "queued" | "duplicate")
    acked: Mutex<HashMap<String, (String, String)>>,
}

/// One client: posts distinct bodies back to back; a request without an answer (the process
/// died) or with a non-200 is sent again, unchanged, until it is acknowledged.
async fn client(n: usize, port: u16, stop: Arc<AtomicBool>, seen: Arc<Clients>) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/hook/s");
    for i in 0u64.. {
        let body_id = format!("c{n}-{i}");
        let body = format!(r#"{{"id":"{body_id}","pad":"{}"}}"#, "x".repeat(200));
        let sig = hmac_hex(SECRET, body.as_bytes());
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            seen.sent.fetch_add(1, Ordering::Relaxed);
            let resp = http
                .post(&url)
                .header("x-signature", &sig)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            if let Ok(resp) = resp
                && resp.status() == 200
                && let Ok(json) = resp.json::<serde_json::Value>().await
            {
                let id = json["event_id"].as_str().unwrap().to_string();
                let status = json["status"].as_str().unwrap().to_string();
                seen.acked.lock().unwrap().insert(body_id, (id, status));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[derive(Debug)]
struct Figures {
    cycles: u64,
    sent: u64,
    acked: usize,
    acked_as_duplicate: usize,
    delivered: usize,
    lost: usize,
    duplicate_deliveries: usize,
    split_events: usize,
    seconds: f64,
}

async fn chaos(cycles: u64, clients: usize) -> Figures {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hookgate.log");
    let rx = TestReceiver::start(200).await;
    let (port, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), port, admin, &rx.url());

    // The receiver is sometimes slow and, unless HOOKGATE_CHAOS_TIMEOUTS=0, sometimes slower than
    // the 1 s timeout (each such attempt is sent again: duplicates that are not the kill's doing).
    let past_timeout = env_or("HOOKGATE_CHAOS_TIMEOUTS", 1) != 0;
    let moody = {
        let rx = rx.clone();
        tokio::spawn(async move {
            loop {
                let ms = [0, 0, 0, 30, 200, if past_timeout { 1500 } else { 400 }][rand::random_range(0..6)];
                rx.set_delay(Duration::from_millis(ms));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Clients::default());
    let mut child = start(&config, &log, port).await;
    let load: Vec<_> = (0..clients).map(|n| tokio::spawn(client(n, port, stop.clone(), seen.clone()))).collect();
    let mixed = std::env::var("HOOKGATE_CHAOS_SIGNAL").is_ok_and(|s| s == "mixed");
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(rand::random_range(300..1500))).await;
        if mixed && cycle % 2 == 1 {
            // SIGTERM: stop accepting, answer what is in flight, finish running deliveries.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
            assert!(child.wait().unwrap().success(), "SIGTERM under load exits 0");
        } else {
            child.kill().unwrap(); // SIGKILL, mid-request and mid-delivery
            child.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..300))).await;
        child = start(&config, &log, port).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    moody.abort();
    rx.set_delay(Duration::ZERO);

    let acked: HashMap<String, (String, String)> = seen.acked.lock().unwrap().clone();
    let delivered_ids = || -> HashSet<String> {
        rx.received().iter().filter(|r| r.status == 200).map(|r| r.header("webhook-id")).collect()
    };
    let limit = Duration::from_secs(env_or("HOOKGATE_CHAOS_DRAIN_SECONDS", 60));
    eventually(limit, async || {
        let got = delivered_ids();
        acked.values().all(|(id, _)| got.contains(id))
    })
    .await;
    // An attempt the receiver answered after the destination's timeout gave the receiver its
    // event, but hookgate counted it failed and will try again: wait for those retries too.
    eventually(limit, async || unfinished(admin).await == Some(0.0)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "clean shutdown at the end");

    let received = rx.received();
    let ok: Vec<_> = received.iter().filter(|r| r.status == 200).collect();
    let got: HashSet<String> = ok.iter().map(|r| r.header("webhook-id")).collect();
    let lost = acked.values().filter(|(id, _)| !got.contains(id)).count();
    // A body (one logical event) must map to one event id, even when its request was retried
    // across a crash.
    let mut events_per_body: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &received {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        events_per_body.entry(body["id"].as_str().unwrap().to_string()).or_default().insert(r.header("webhook-id"));
    }
    let split_events = events_per_body.values().filter(|ids| ids.len() > 1).count();

    // The store agrees: every delivery succeeded, none dead or still waiting.
    let store = hookgate::store::sqlite::SqliteStore::open(&dir.path().join("hookgate.db"), hookgate::clock::system())
        .await
        .unwrap();
    let counts: HashMap<String, u64> =
        store.count_by_status().await.unwrap().into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    let unfinished: u64 = ["pending", "in_flight", "failed", "dead"].iter().map(|s| counts[*s]).sum();
    assert_eq!(unfinished, 0, "every stored delivery succeeded: {counts:?}; log in {}", dir.path().display());
    assert_eq!(counts["succeeded"] as usize, got.len(), "the store and the receiver agree");

    let figures = Figures {
        cycles,
        sent: seen.sent.load(Ordering::Relaxed),
        acked: acked.len(),
        acked_as_duplicate: acked.values().filter(|(_, s)| s == "duplicate").count(),
        delivered: acked.len() - lost,
        lost,
        duplicate_deliveries: ok.len() - got.len(),
        split_events,
        seconds: started.elapsed().as_secs_f64(),
    };
    if lost > 0 || split_events > 0 {
        // Keep the evidence.
        let kept = dir.keep();
        eprintln!("chaos evidence kept in {}", kept.display());
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let cycles = env_or("HOOKGATE_CHAOS_CYCLES", 3);
    let clients = env_or("HOOKGATE_CHAOS_CLIENTS", 8) as usize;
    let f = chaos(cycles, clients).await;
    let what = if std::env::var("HOOKGATE_CHAOS_SIGNAL").is_ok_and(|s| s == "mixed") {
        "kill -9 and SIGTERM alternating under load; receiver sometimes slower than its timeout"
    } else if env_or("HOOKGATE_CHAOS_TIMEOUTS", 1) != 0 {
        "kill -9 under load; receiver sometimes slower than its timeout"
    } else {
        "kill -9 under load; receiver sometimes slow (within its timeout)"
    };
    let row = format!(
        "| {what} | {} | {} | {} ({} answered as duplicate after a retry) | {} | {} | {} | {:.0} s |",
        f.cycles, f.sent, f.acked, f.acked_as_duplicate, f.delivered, f.lost, f.duplicate_deliveries, f.seconds
    );
    println!("{row}");
    if let Ok(path) = std::env::var("HOOKGATE_CHAOS_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        writeln!(file, "{row}").unwrap();
    }
    assert!(f.acked >= 20 * f.cycles as usize, "load kept flowing between kills: {f:?}");
    assert_eq!(f.lost, 0, "acknowledged events lost: {f:?}");
    assert_eq!(f.split_events, 0, "a retried request became a second event: {f:?}");
}

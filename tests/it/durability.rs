//! The promise: once hookgate says 200, the event is delivered, even after `kill -9`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::app::SECRET;
use crate::support::{TestConfig, TestReceiver, binary, eventually, hmac_hex};

/// Starts `hookgate serve` and returns it with its ingest address (read from its log).
fn spawn_serve(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKGATE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && line.contains("ingest listening") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["addr"].as_str().unwrap().to_string());
                sent = true;
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("hookgate started");
    (child, addr)
}

/// POSTs `body` to source `s` at `addr`, signed; returns the status.
async fn post_signed(addr: &str, body: &'static [u8]) -> u16 {
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/hook/s"))
        .header("x-signature", hmac_hex(SECRET, body))
        .body(body)
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_while_the_destination_is_down() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port for the destination, and leave it closed: the destination is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = TestConfig::new()
        .delivery("initial_backoff", "50ms")
        .delivery("max_backoff", "200ms")
        .delivery("max_attempts", 1000)
        // Retries alone: the breaker's cooldown would hold the backlog past this test's waits.
        .delivery("circuit_breaker", false)
        .http("rx", &format!("http://127.0.0.1:{port}/hook"))
        .set("timeout", "2s")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let (mut child, addr) = spawn_serve(&config);

    // Eight clients post continuously; kill -9 lands while requests are in flight.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut loops = Vec::new();
    for worker in 0..8 {
        let acked = acked.clone();
        let url = format!("http://{addr}/hook/s");
        loops.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let body = format!(r#"{{"worker":{worker},"n":{i}}}"#);
                let sig = hmac_hex(SECRET, body.as_bytes());
                let Ok(resp) = client.post(&url).header("x-signature", sig).body(body).send().await else { return };
                if resp.status() == 200 {
                    let json: serde_json::Value = resp.json().await.unwrap();
                    acked.lock().unwrap().push(json["event_id"].as_str().unwrap().to_string());
                }
            }
        }));
    }
    assert!(eventually(Duration::from_secs(20), async || acked.lock().unwrap().len() >= 200).await);
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    for l in loops {
        l.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100, "most requests before the kill were acknowledged: {}", acked.len());

    // The destination comes back; hookgate restarts on the same database.
    let rx = TestReceiver::start_on(port, 200).await;
    let (mut child, _addr) = spawn_serve(&config);
    let all = eventually(Duration::from_secs(30), async || {
        let got: std::collections::HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
        acked.iter().all(|id| got.contains(id))
    })
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    let got: std::collections::HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !got.contains(*id)).collect();
    assert!(all, "{} of {} acknowledged events lost: {lost:?}", lost.len(), acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::start(200).await;
    rx.set_delay(Duration::from_millis(500));
    let config = TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"]).write(dir.path());
    let (mut child, addr) = spawn_serve(&config);
    assert_eq!(post_signed(&addr, b"drain me").await, 200);
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 1).await, "delivery started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    // The running delivery finished rather than being cut off: it was recorded as succeeded,
    // so a restart does not deliver it again.
    let (mut child, _) = spawn_serve(&config);
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(rx.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_waits_for_running_deliveries_only_up_to_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // The command outlives the grace period by far; it runs in the config's directory.
    let config = TestConfig::new()
        .server("shutdown_grace", "1s")
        .exec("slow", &["sh", "-c", "echo $$ >> started.txt; sleep 60"])
        .set("timeout", "120s")
        .hmac_source("s", &["slow"])
        .write(dir.path());
    let (mut child, addr) = spawn_serve(&config);
    assert_eq!(post_signed(&addr, b"cut short").await, 200);
    let started = dir.path().join("started.txt");
    let runs = || std::fs::read_to_string(&started).map(|s| s.lines().count()).unwrap_or(0);
    assert!(eventually(Duration::from_secs(10), async || runs() == 1).await, "delivery started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    // Well before the command's 60 s: the grace period bounds the drain.
    let mut waited = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(waited < 300, "hookgate still running 30 s after SIGINT with a 1 s grace period");
        waited += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");
    // The command and what it started (the sleep) are gone: it ran as its own process group.
    let group: i32 = std::fs::read_to_string(&started).unwrap().trim().parse().unwrap();
    let alive = || nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), None).is_ok();
    assert!(eventually(Duration::from_secs(5), async || !alive()).await, "process group {group} outlived hookgate");
    // The cut-off attempt is not lost: the next start runs the delivery again.
    let (mut child, _) = spawn_serve(&config);
    let again = eventually(Duration::from_secs(10), async || runs() == 2).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = child.wait();
    assert!(again, "the interrupted delivery ran again after the restart");
}

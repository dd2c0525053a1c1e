//! `hookgate listen` (CONTRACT §10), the real binary as a process: it forwards a pull
//! destination's events to a real local receiver with an http destination's headers, acks them,
//! keeps going across a restart of the gateway (also a real process) and loses nothing, and on
//! Ctrl-C nacks what it holds and exits 0.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::app::ADMIN_TOKEN;
use crate::support::node::Node;
use crate::support::process::free_port;
use crate::support::{TestApp, TestConfig, TestReceiver, binary, eventually, signed_post};

const LAPTOP_TOKEN: &str = "laptop-token-0123456789";

/// A config with the admin token and the pull destination `laptop` (its own token) fed by `s`.
fn config(dir: &Path, ingest: u16, admin: u16) -> std::path::PathBuf {
    let path = TestConfig::new()
        .ingest_port(ingest)
        .admin_port(admin)
        .admin_token()
        .fast_retries()
        .pull("laptop")
        .set("token_file", "laptop-token.txt")
        .set("lease", "5s")
        .hmac_source("s", &["laptop"])
        .write(dir);
    std::fs::write(dir.join("laptop-token.txt"), LAPTOP_TOKEN).unwrap();
    path
}

/// `hookgate listen laptop --forward-to URL --admin-url ADMIN --json` with the destination's
/// token; its stdout lines are collected.
struct Listen {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Listen {
    fn start(admin: &str, forward_to: &str, extra: &[&str]) -> Listen {
        let mut child = Command::new(binary())
            .args(["listen", "laptop", "--forward-to", forward_to, "--admin-url", admin, "--json"])
            .args(extra)
            .env("HOOKGATE_ADMIN_TOKEN", LAPTOP_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(serde_json::from_str(&line).expect("--json prints JSON lines"));
            }
        });
        Listen { child, lines }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Listen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_event(client: &reqwest::Client, url: &str, n: usize) -> String {
    let resp = signed_post(client, url, format!(r#"{{"n":{n}}}"#))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string()
}

/// Every event of the store, as the admin API lists them: (id, status).
async fn statuses(client: &reqwest::Client, admin: &str) -> Vec<(String, String)> {
    let resp = client.get(format!("{admin}/api/events?limit=100")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["status"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_forwards_every_event_across_a_restart_of_the_gateway() {
    let receiver = TestReceiver::start(200).await;
    // Slow enough that the listener holds events when the gateway dies.
    receiver.set_delay(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin_port) = (free_port(), free_port());
    let path = config(dir.path(), ingest, admin_port);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let client = reqwest::Client::new();
    let mut gateway = Node::spawn(&path, "all", &[]);
    let listen = Listen::start(&admin, &receiver.url(), &[]);

    let hook = gateway.url("/hook/s");
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(post_event(&client, &hook, n).await);
    }
    assert!(eventually(Duration::from_secs(20), async || receiver.count() >= 2).await, "forwarding started");
    // The gateway dies mid-stream: no drain, claims left in flight.
    gateway.kill_9();
    drop(gateway);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gateway = Node::spawn(&path, "all", &[]);
    for n in 6..9 {
        ids.push(post_event(&client, &gateway.url("/hook/s"), n).await);
    }

    let all_done = eventually(Duration::from_secs(60), async || {
        let s = statuses(&client, &admin).await;
        s.len() == ids.len() && s.iter().all(|(_, st)| st == "succeeded")
    })
    .await;
    assert!(all_done, "every event acked: {:?}\n{}", statuses(&client, &admin).await, gateway.log());
    let received = receiver.received();
    for id in &ids {
        let got: Vec<_> = received.iter().filter(|r| r.header("webhook-id") == *id).collect();
        assert!(!got.is_empty(), "event {id} reached the receiver (at least once)");
        let r = got[0];
        assert_eq!(r.header("x-hookgate-source"), "s");
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("webhook-timestamp").parse::<u64>().is_ok());
        assert!(r.header("x-hookgate-attempt").parse::<u32>().is_ok_and(|a| a >= 1));
        assert_eq!(r.method, "POST");
    }
    let lines = listen.lines();
    for id in &ids {
        let line = lines.iter().find(|l| l["event_id"] == id.as_str()).unwrap_or_else(|| panic!("a line for {id}"));
        assert_eq!((&line["source"], &line["status"], &line["ok"]), (&"s".into(), &200.into(), &true.into()), "{line}");
        assert!(line["time"].as_str().is_some() && line["duration_ms"].as_u64().is_some(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_nacks_what_listen_holds_and_exits_0() {
    let receiver = TestReceiver::start(200).await;
    // The receiver never answers in time: the event is held when Ctrl-C comes.
    receiver.set_delay(Duration::from_secs(120));
    let config = TestConfig::new()
        .admin_token()
        .pull("laptop")
        .set("token_file", "laptop-token.txt")
        .hmac_source("s", &["laptop"]);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    config.write(dir.path());
    std::fs::write(dir.path().join("laptop-token.txt"), LAPTOP_TOKEN).unwrap();
    let app = TestApp::start_in(dir, Vec::new()).await;
    let mut listen = Listen::start(&app.admin_url(""), &receiver.url(), &["--timeout", "5m"]);
    let (_, json) = app.post_signed("s", b"{}").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(20), async || receiver.count() == 1).await, "forwarding");

    let pid = nix::unistd::Pid::from_raw(listen.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut status = None;
    eventually(Duration::from_secs(20), async || {
        status = listen.child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "exits 0 on Ctrl-C");
    let d = &app.store.get_event(&id).await.unwrap().unwrap().deliveries[0];
    assert_eq!(d.status, "failed", "nacked at once, not left in flight until its lease ends: {d:?}");
    assert_eq!(d.attempt_log[0].error.as_deref(), Some("nacked: hookgate listen stopped before forwarding it"));
    assert!(listen.lines().is_empty(), "nothing was forwarded to the end");
}

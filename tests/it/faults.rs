//! Faults, short versions for the default run: a full disk, a second process on the same
//! database, hostile slow clients. (The long versions are scripts; see docs/RELIABILITY.md.)

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::node::Node;
use crate::support::{TestApp, TestConfig, TestReceiver, binary, eventually};

/// Mounts a tmpfs of `size` at `dir` (CI runs as root; without root this test fails loudly).
fn mount_tmpfs(dir: &std::path::Path, size: &str) {
    let out =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_answers_503_loses_nothing_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    mount_tmpfs(dir.path(), "1m");
    let _unmount = Unmount(dir.path().to_path_buf());
    let rx = TestReceiver::start(503).await; // destination down: everything stays queued
    TestConfig::new()
        .delivery("initial_backoff", "1h")
        .delivery("max_backoff", "1h")
        .http("rx", &rx.url())
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let app = TestApp::start_in(std::sync::Arc::new(dir), Vec::new()).await;
    let mut acked = Vec::new();
    let mut refused = 0;
    let big = "x".repeat(8000);
    for i in 0..400 {
        let (status, json) = app.post_signed("s", format!(r#"{{"n":{i},"pad":"{big}"}}"#).as_bytes()).await;
        match status {
            200 => acked.push(json["event_id"].as_str().unwrap().to_string()),
            503 => {
                assert_eq!(json["error"], "storage unavailable");
                refused += 1;
                if refused > 20 {
                    break;
                }
            }
            other => panic!("unexpected status {other}: {json}"),
        }
    }
    assert!(refused > 0, "the disk never filled ({} events acknowledged)", acked.len());
    assert!(!acked.is_empty());
    // /readyz says what the last commit said, on both listeners, until a commit succeeds.
    let readyz = async |url: String| {
        let resp = app.client.get(url).send().await.unwrap();
        (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
    };
    // Each look follows a fresh refused event, so readyz's own probe (a one-page commit a second
    // after the last failure, which can still fit on the full disk) has not run yet.
    for url in [app.url("/readyz"), app.admin_url("/readyz")] {
        let (mut said, mut seen) = (false, Vec::new());
        for i in 0..10 {
            let (status, json) = app.post_signed("s", format!(r#"{{"again":{i},"pad":"{big}"}}"#).as_bytes()).await;
            if status == 200 {
                acked.push(json["event_id"].as_str().unwrap().to_string());
                continue;
            }
            let (status, json) = readyz(url.clone()).await;
            said = (status, json["reason"].as_str()) == (503, Some("commit_failing"));
            if said {
                break;
            }
            seen.push((status, json));
        }
        assert!(said, "while full, readyz never said commit_failing after a refused event: {seen:?}");
    }
    // Space returns: ready again before any new event (readyz tries a commit of its own, a
    // second after the last failure), ingest works again, and every acknowledged event is still
    // there, intact.
    let mount_point = app.dir.path().to_path_buf();
    let out = Command::new("mount").args(["-o", "remount,size=64m"]).arg(&mount_point).output().unwrap();
    assert!(out.status.success());
    for url in [app.url("/readyz"), app.admin_url("/readyz")] {
        let ready = eventually(Duration::from_secs(5), async || readyz(url.clone()).await.0 == 200).await;
        assert!(ready, "once space returns: {:?}", readyz(url).await);
    }
    let (status, _) = app.post_signed("s", b"after the disk was freed").await;
    assert_eq!(status, 200, "recovers when space returns");
    for id in &acked {
        let ev = app.store.get_event(id).await.unwrap();
        assert!(ev.is_some(), "acknowledged event {id} lost");
    }
    let conn = rusqlite::Connection::open(mount_point.join("hookgate.db")).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}

/// The one-owner lock is on the database file itself: deleting a side file (the `.lock` file
/// hookgate used to keep) does not let a second process in, and the refused attempt leaves the
/// first process's own SQLite locks alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_database_is_refused_even_without_its_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().http("rx", "http://127.0.0.1:9/").hmac_source("s", &["rx"]).write(dir.path());
    let first = Node::spawn(&config, "all", &[]);
    let client = reqwest::Client::new();
    let post = async |body: &str| {
        let sig = crate::support::hmac_hex(crate::support::app::SECRET, body.as_bytes());
        let resp = client.post(first.url("/hook/s")).header("x-signature", sig).body(body.to_string()).send();
        resp.await.unwrap().status().as_u16()
    };
    assert_eq!(post("before").await, 200);
    let db = dir.path().join("hookgate.db");
    let _ = std::fs::remove_file(dir.path().join("hookgate.db.lock"));
    let mut second = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = 0;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if waited == 100 {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second process started on {} after its lock file was deleted", db.display());
        }
        waited += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("in use by another hookgate process"), "{err}");
    assert!(err.contains(&db.display().to_string()), "the refusal names the file: {err}");
    // The first process still commits: the second one's attempt took none of its locks away.
    for i in 0..20 {
        assert_eq!(post(&format!("after {i}")).await, 200);
    }
    assert!(first.log().lines().all(|l| !l.contains("\"ERROR\"")), "{}", first.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_normal_ones() {
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new().server("request_timeout", "1s").http("rx", &rx.url()).hmac_source("s", &["rx"]);
    let app = TestApp::spawn_config(&config).await;
    // 300 slowloris connections: half a request line each, then silence.
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut s = tokio::net::TcpStream::connect(app.ingest).await.unwrap();
        s.write_all(b"POST /hook/s HTTP/1.1\r\nhost: x\r\nx-partial: ").await.unwrap();
        idle.push(s);
    }
    for i in 0..20 {
        let (status, _) = app.post_signed("s", format!("normal {i}").as_bytes()).await;
        assert_eq!(status, 200);
    }
    // A body that never finishes gets 408 after request_timeout, not a stuck worker.
    let mut s = tokio::net::TcpStream::connect(app.ingest).await.unwrap();
    s.write_all(b"POST /hook/s HTTP/1.1\r\nhost: x\r\nx-signature: 00\r\ncontent-length: 100\r\n\r\nonly a part")
        .await
        .unwrap();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("answered in time").unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&buf[..n]));
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 20).await);
    drop(idle);
}

//! Faults, short versions for the default run: a full disk, a second process on the same
//! database, hostile slow clients. (The long versions are scripts; see docs/RELIABILITY.md.)

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::app::{hmac_source, write_config};
use crate::support::{TestApp, TestReceiver, binary, eventually};

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
    let body = format!(
        "[delivery]\ninitial_backoff = \"1h\"\nmax_backoff = \"1h\"\n\n\
         [[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n{}",
        rx.url(),
        hmac_source("s", &["rx"])
    );
    write_config(dir.path(), "", &body);
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
    // Space returns: ingest works again, and every acknowledged event is still there, intact.
    let mount_point = app.dir.path().to_path_buf();
    let out = Command::new("mount").args(["-o", "remount,size=64m"]).arg(&mount_point).output().unwrap();
    assert!(out.status.success());
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

#[test]
fn a_second_process_on_the_same_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n{}",
            hmac_source("s", &["rx"])
        ),
    );
    let mut first = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new(binary()).args(["serve", "--config"]).arg(&config).output().unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("in use by another hookgate process"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_starve_normal_ones() {
    let rx = TestReceiver::start(200).await;
    let app = TestApp::spawn_with(
        "request_timeout = \"1s\"",
        &format!(
            "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n{}",
            rx.url(),
            hmac_source("s", &["rx"])
        ),
        Vec::new(),
    )
    .await;
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

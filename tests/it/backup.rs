//! `hookgate backup FILE` (`POST /api/backup`): an online copy of the embedded database, taken
//! while the process serves, that is consistent and that hookgate starts from.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestApp, TestConfig, TestReceiver, binary, signed_post};

/// Runs `hookgate backup FILE` in `cwd` (off the runtime: the load goes on meanwhile).
async fn backup_cli(node: &Node, file: &Path, cwd: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(["backup", "--admin-url", &node.admin_url("/")]).arg(file).current_dir(cwd).env_remove("HOOKGATE_CONFIG");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Four clients post signed events without pause; the backup is taken in the middle. Every event
/// acknowledged before the backup began is in it, the copy passes `PRAGMA integrity_check`, and a
/// hookgate started on it serves those events.
#[tokio::test]
async fn a_backup_under_load_is_consistent_and_hookgate_starts_from_it() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"]).write(dir.path());
    let node = Node::spawn(&config, "all", &[]);
    let url = node.url("/hook/s");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!(r#"{{"client":{c},"n":{n}}}"#);
                    n += 1;
                    let resp = signed_post(&client, &url, body).send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let json: serde_json::Value = resp.json().await.unwrap();
                    acked.lock().unwrap().push(json["event_id"].as_str().unwrap().to_string());
                }
            })
        })
        .collect();
    // Let the load build up, then note what was acknowledged before the backup began.
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<String> = acked.lock().unwrap().clone();
    let out_dir = tempfile::tempdir().unwrap();
    let cwd = out_dir.path().to_path_buf();
    // A relative FILE is the caller's: it resolves against the CLI's directory.
    let (code, out, err) = backup_cli(&node, Path::new("copy.db"), &cwd).await;
    let during = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(code, 0, "{out}{err}");
    let file = out_dir.path().join("copy.db");
    assert!(out.contains("backup written to") && out.contains(file.to_str().unwrap()), "{out}");
    assert!(during > before.len(), "the load went on while the backup ran ({during} vs {})", before.len());

    {
        let db = rusqlite::Connection::open(&file).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
    }
    // Writing the same file again is refused: a backup never overwrites.
    let (code, _, err) = backup_cli(&node, &file, &cwd).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("exists"), "{err}");
    drop(node);

    // A hookgate started on the copy has every event acknowledged before the backup began.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&file, restored.path().join("hookgate.db")).unwrap();
    TestConfig::new().http("rx", &rx.url()).hmac_source("s", &["rx"]).write(restored.path());
    let app = TestApp::start_in(Arc::new(restored), Vec::new()).await;
    let mut missing = Vec::new();
    for id in &before {
        if app.store.get_event(id).await.unwrap().is_none() {
            missing.push(id.clone());
        }
    }
    assert!(missing.is_empty(), "{} of {} acknowledged events missing from the backup", missing.len(), before.len());
    let unique: HashSet<&String> = before.iter().collect();
    assert_eq!(unique.len(), before.len());
    // And it goes on taking events.
    let (status, _) = app.post_signed("s", br#"{"after":"restore"}"#).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_backup_request_is_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        TestApp::spawn_config(&TestConfig::new().http("rx", "http://127.0.0.1:9/").hmac_source("s", &["rx"])).await;
    let post = async |body: serde_json::Value| {
        let resp = app.client.post(app.admin_url("/api/backup")).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap())
    };
    let nowhere = dir.path().join("no/such/dir/copy.db");
    for (body, want) in [
        (serde_json::json!({}), "path is required"),
        (serde_json::json!({ "path": "relative.db" }), "is not absolute"),
        (serde_json::json!({ "path": nowhere }), "does not exist"),
        (serde_json::json!({ "path": dir.path().join("x.db"), "overwrite": true }), "unknown field"),
        (serde_json::json!({ "path": app.dir.path().join("hookgate.db") }), "never overwrites"),
    ] {
        let (status, json) = post(body.clone()).await;
        assert_eq!(status, 400, "{body}: {json}");
        assert!(json["error"].as_str().unwrap().contains(want), "{body}: {json}");
    }
    let target = dir.path().join("ok.db");
    let (status, json) = post(serde_json::json!({ "path": target })).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["status"], "ok");
    assert!(json["bytes"].as_u64().unwrap() > 0, "{json}");
    // The API is behind the admin token like every /api endpoint: covered by admin.rs for all routes.
    app.stop().await;
}

#[tokio::test]
async fn the_postgresql_store_points_to_pg_dump() {
    let Some(database) = fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_config(
        &TestConfig::new().storage("url", database).http("rx", "http://127.0.0.1:9/").hmac_source("s", &["rx"]),
    )
    .await;
    let resp = app
        .client
        .post(app.admin_url("/api/backup"))
        .json(&serde_json::json!({ "path": dir.path().join("pg.db") }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert!(json["error"].as_str().unwrap().contains("pg_dump"), "{json}");
    assert!(!dir.path().join("pg.db").exists());
    app.stop().await;
}

//! The embedded store notices when it can no longer commit where it should: its file deleted or
//! replaced while serving, its pages corrupted. From then on ingest and `/readyz` answer 503 on
//! both listeners until a restart, and a restart refuses a corrupt file. Real `hookgate serve`
//! processes on real SQLite files (docs/RELIABILITY.md, "Found in review").

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{SECRET, hmac_source, write_config};
use crate::support::node::Node;
use crate::support::{TestReceiver, binary, eventually, hmac_hex};

/// A config delivering source `s` to `rx`, retrying fast, with its SQLite file in `dir`.
/// Retries only (the receiver is down on purpose, so no circuit breaker to wait out).
fn config(dir: &Path, rx: &TestReceiver) -> std::path::PathBuf {
    let body = format!(
        "[delivery]\ninitial_backoff = \"100ms\"\nmax_backoff = \"200ms\"\nmax_attempts = 1000\ncircuit_breaker = false\n\n\
         [[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n{}",
        rx.url(),
        hmac_source("s", &["rx"])
    );
    write_config(dir, "", &body)
}

/// POSTs `body` signed to `node`; returns (status, JSON).
async fn post(client: &reqwest::Client, node: &Node, body: &str) -> (u16, serde_json::Value) {
    let resp = client
        .post(node.url("/hook/s"))
        .header("x-signature", hmac_hex(SECRET, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

/// `/readyz` on the ingest and on the admin listener: (status, JSON) each.
async fn readyz(client: &reqwest::Client, node: &Node) -> [(u16, serde_json::Value); 2] {
    let mut out = Vec::new();
    for url in [node.url("/readyz"), node.admin_url("/readyz")] {
        let resp = client.get(url).send().await.unwrap();
        out.push((resp.status().as_u16(), resp.json().await.unwrap_or_default()));
    }
    [out[0].clone(), out[1].clone()]
}

/// Asserts that both listeners say unavailable because of `reason`.
async fn assert_unready(client: &reqwest::Client, node: &Node, reason: &str) {
    for (status, json) in readyz(client, node).await {
        assert_eq!(status, 503, "{json}");
        assert_eq!(json["status"], "unavailable", "{json}");
        assert_eq!(json["error"], "storage unavailable", "{json}");
        assert_eq!(json["reason"], reason, "{json}");
    }
}

/// Posts `n` events; every one must be refused with 503 `storage unavailable`.
async fn assert_refused(client: &reqwest::Client, node: &Node, n: usize, what: &str) {
    for i in 0..n {
        let (status, json) = post(client, node, &format!(r#"{{"after":"{what}","n":{i}}}"#)).await;
        assert_eq!(status, 503, "{what}: request {i} got {status} {json}");
        assert_eq!(json["error"], "storage unavailable");
    }
}

/// An error log line naming `file` whose text says `says`.
fn logged_error_naming(node: &Node, file: &Path, says: &str) -> bool {
    let file = file.display().to_string();
    node.log().lines().any(|l| l.contains("\"ERROR\"") && l.contains(&file) && l.contains(says))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_replaced_database_file_stops_ingest_within_a_second() {
    // Each case: what is done to the file while hookgate serves, and the reason /readyz gives.
    type Break = fn(&Path);
    let cases: [(&str, Break, &str); 2] = [
        ("deleted", |db| std::fs::remove_file(db).unwrap(), "database_deleted"),
        (
            "replaced",
            |db| {
                let other = db.with_extension("other");
                std::fs::write(&other, b"").unwrap();
                std::fs::rename(&other, db).unwrap();
            },
            "database_replaced",
        ),
    ];
    let client = reqwest::Client::new();
    for (case, break_it, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let rx = TestReceiver::start(503).await; // down for now: the events stay queued
        let node = Node::spawn(&config(dir.path(), &rx), "all", &[]);
        let mut acked = Vec::new();
        for i in 0..20 {
            let (status, json) = post(&client, &node, &format!(r#"{{"before":{i}}}"#)).await;
            assert_eq!(status, 200, "{case}: {json}");
            acked.push(json["event_id"].as_str().unwrap().to_string());
        }
        assert!(readyz(&client, &node).await.iter().all(|(s, _)| *s == 200), "{case}: ready before");

        let db = dir.path().join("hookgate.db");
        break_it(&db);
        let broken = Instant::now();
        // No request meanwhile: the watchdog notices on its own, and says so naming the file.
        let noticed = eventually(Duration::from_secs(3), async || logged_error_naming(&node, &db, case)).await;
        let took = broken.elapsed();
        assert!(noticed, "{case}: nothing logged three seconds after the file was {case}:\n{}", node.log());
        assert!(took < Duration::from_secs(1), "{case}: noticed after {took:?}");
        println!("{case}: error logged after {} ms", took.as_millis());
        assert_unready(&client, &node, reason).await;
        assert_refused(&client, &node, 50, case).await;

        // What was stored before is still in the open (now unlinked) file: it is still delivered
        // while this process runs, and nothing makes the process ready again.
        rx.set_default(200);
        let delivered = eventually(Duration::from_secs(15), async || {
            let got: std::collections::HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
            acked.iter().all(|id| got.contains(id))
        })
        .await;
        assert!(delivered, "{case}: events acknowledged before the file was {case} are still delivered");
        assert_unready(&client, &node, reason).await;
        assert_refused(&client, &node, 5, case).await;
    }
}

/// Overwrites the middle third of `file` (whole pages, far beyond the header) with 0xFF.
fn corrupt_middle(file: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    let (from, to) = (len / 3 / 4096 * 4096, 2 * len / 3 / 4096 * 4096);
    assert!(from >= 4096 && to > from, "the database is too small to corrupt its middle: {len} bytes");
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(from)).unwrap();
    f.write_all(&vec![0xFF; (to - from) as usize]).unwrap();
    f.sync_all().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_stops_ingest_and_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::start(200).await;
    let config = config(dir.path(), &rx);
    let mut node = Node::spawn(&config, "all", &[]);
    let client = reqwest::Client::new();
    let pad = "p".repeat(2000);
    let mut acked = Vec::new();
    for i in 0..300 {
        let (status, json) = post(&client, &node, &format!(r#"{{"n":{i},"pad":"{pad}"}}"#)).await;
        assert_eq!(status, 200, "{json}");
        acked.push(json["event_id"].as_str().unwrap().to_string());
    }
    assert!(eventually(Duration::from_secs(20), async || rx.count() >= 300).await, "delivered before");
    // Quiet: the checkpoints have copied everything into the database file.
    tokio::time::sleep(Duration::from_millis(800)).await;

    let db = dir.path().join("hookgate.db");
    corrupt_middle(&db);
    // One more write starts the WAL over, so readers read the damaged pages from the file.
    let _ = post(&client, &node, r#"{"after":"corruption"}"#).await;
    // The operator looks at the events: some of them are on damaged pages.
    let mut failed_reads = 0;
    for id in &acked {
        let resp = client.get(node.admin_url(&format!("/api/events/{id}"))).send().await.unwrap();
        if resp.status() == 503 {
            failed_reads += 1;
            break;
        }
    }
    assert!(failed_reads > 0, "no read hit the damaged pages");
    assert_unready(&client, &node, "database_corrupt").await;
    assert_refused(&client, &node, 20, "corruption").await;
    assert!(logged_error_naming(&node, &db, "corrupt"), "no error naming {}:\n{}", db.display(), node.log());
    node.kill_9();

    // A restart refuses the file, names it and says how to recover it.
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("HOOKGATE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hookgate started on a corrupt database");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    for needle in [db.display().to_string().as_str(), "corrupt", ".recover", "docs/RELIABILITY.md"] {
        assert!(err.contains(needle), "the refusal says {needle:?}:\n{err}");
    }
}

#[test]
fn serve_role_ingest_on_sqlite_warns_that_nothing_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n{}",
        hmac_source("s", &["rx"])
    );
    let config = write_config(dir.path(), "", &body);
    let node = Node::spawn(&config, "ingest", &[]);
    let warned = node.log().lines().any(|l| l.contains("\"WARN\"") && l.contains("nothing delivers"));
    assert!(warned, "no warning:\n{}", node.log());
}

#[test]
fn the_check_at_start_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n{}",
        hmac_source("s", &["rx"])
    );
    let checked = |storage: &str| {
        let extra = crate::support::app::Extra { storage, ..Default::default() };
        let config = crate::support::app::write_config_with(dir.path(), &extra, &body);
        Node::spawn(&config, "all", &[]).count_logged("database checked (quick_check)")
    };
    assert_eq!(checked(""), 1, "checked by default");
    assert_eq!(checked("check_at_start = false"), 0, "not checked when turned off");
}

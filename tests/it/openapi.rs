//! The admin API agrees with docs/openapi.json: schemathesis (scripts/test-requirements.txt) reads
//! the document a real `hookgate serve` serves and sends it what the document allows and what it
//! forbids, with `--checks all` (documented statuses and bodies, valid input accepted, invalid
//! input refused, auth required). Bounded: a fixed seed, 20 examples per operation, a hard timeout.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::{ADMIN_TOKEN, Extra, SECRET, hmac_source, write_config_with};
use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::{TestReceiver, eventually, hmac_hex};

/// Past this, schemathesis is killed and the test fails (a run takes ~10 s here).
const ST_LIMIT: Duration = Duration::from_secs(120);

/// A node with a few events: some delivered, some dead (a destination that refuses connections).
async fn seeded_node(dir: &Path, env: &[(&str, &str)]) -> (Node, TestReceiver) {
    let rx = TestReceiver::start(200).await;
    let body = format!(
        "[delivery]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\n\n\
         [[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n\
         [[destinations]]\nname = \"down\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\nmax_attempts = 1\n\n{}{}",
        rx.url(),
        hmac_source("s", &["rx", "down"]),
        hmac_source("t", &["rx"]),
    );
    let config = write_config_with(dir, &Extra { admin: Extra::ADMIN_TOKEN, ..Extra::default() }, &body);
    let node = Node::spawn(&config, "all", env);
    let client = reqwest::Client::new();
    for (i, source) in ["s", "t", "s", "t", "s"].iter().enumerate() {
        let body = format!("{{\"id\":\"evt_{i}\"}}");
        let resp = client
            .post(node.url(&format!("/hook/{source}")))
            .header("X-Signature", hmac_hex(SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let dead = eventually(Duration::from_secs(10), async || {
        let url = node.admin_url("/api/events?status=dead");
        let page: serde_json::Value =
            client.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap_or_default();
        page["items"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    assert!(dead, "the seeded events to `down` went dead");
    (node, rx)
}

/// Runs `st run` against the node's admin listener; returns (exit code, output).
async fn schemathesis(node: &Node, dir: &Path) -> (i32, String) {
    let mut cmd = Command::new(crate::providers::python());
    cmd.args(["-m", "schemathesis.cli", "run", &node.admin_url("/api/openapi.json")])
        .args(["--checks", "all", "--max-examples", "20", "--seed", "1", "--workers", "2"])
        .args(["--request-timeout", "10", "--generation-database", "none", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        // POST /api/backup writes a file wherever it is told (as this user): never fuzzed;
        // tests/it/backup.rs checks its answers.
        .args(["--exclude-path", "/api/backup"])
        // The pull consumers' endpoints: a claim is a long poll (up to 60 s, past the request
        // timeout) and the seeded node has no pull destination; tests/it/pull.rs checks their
        // answers against the shapes this document gives.
        .args(["--exclude-path", "/api/destinations/{name}/claim"])
        .args(["--exclude-path", "/api/deliveries/{id}/ack", "--exclude-path", "/api/deliveries/{id}/nack"])
        // Hypothesis and reports write next to where they run.
        .current_dir(dir)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || {
        let out_path = tempfile::NamedTempFile::new().unwrap();
        let mut child = cmd
            .stdout(out_path.reopen().unwrap())
            .stderr(out_path.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Python ({e}); run scripts/install-test-deps.sh"));
        let started = Instant::now();
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code().unwrap_or(-1);
            }
            if started.elapsed() > ST_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                break -2;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = std::fs::read_to_string(out_path.path()).unwrap_or_default();
        assert!(
            !output.contains("No module named schemathesis"),
            "{output}\nschemathesis is missing: run scripts/install-test-deps.sh"
        );
        (code, output)
    })
    .await
    .unwrap()
}

async fn agrees(env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let (node, _rx) = seeded_node(dir.path(), env).await;
    let (code, output) = schemathesis(&node, dir.path()).await;
    assert_eq!(code, 0, "schemathesis found the admin API and docs/openapi.json disagreeing:\n{output}");
    assert!(output.contains("No issues found"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_schemathesis_finds_the_api_as_documented_on_sqlite() {
    agrees(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_schemathesis_finds_the_api_as_documented_on_postgres() {
    let Some(url) = fresh_database().await else { return };
    agrees(&[("HOOKGATE_DATABASE_URL", &url)]).await;
}

/// PostgreSQL refuses a NUL in text: an event id holding one was a 503 "storage unavailable"
/// (and an error in the log) where it is simply no such event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_a_nul_in_an_event_id_or_filter_is_404_or_400_not_503_on_postgres() {
    let Some(url) = fresh_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config_with(
        dir.path(),
        &Extra { admin: Extra::ADMIN_TOKEN, ..Extra::default() },
        &format!(
            "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n{}",
            hmac_source("s", &["rx"])
        ),
    );
    let node = Node::spawn(&config, "all", &[("HOOKGATE_DATABASE_URL", &url)]);
    let client = reqwest::Client::new();
    for (method, path, want) in [
        ("GET", "/api/events/a%00b", 404),
        ("POST", "/api/events/a%00b/replay", 404),
        ("GET", "/api/events?source=a%00", 400),
        ("GET", "/api/deliveries?destination=%00", 400),
    ] {
        let resp = client
            .request(method.parse().unwrap(), node.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{method} {path}: {}", resp.text().await.unwrap());
    }
    assert_eq!(node.count_logged("admin request failed"), 0, "{}", node.log());
}

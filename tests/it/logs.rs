//! `[log] format` and `level` on a real `hookgate serve`, and `HOOKGATE_LOG` overriding the level.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::process::free_port;
use crate::support::{TestConfig, binary, eventually, signed_post};

/// Serves the config with `[log]` set to `log_table`, posts one signed event with request id
/// `id`, stops the process (SIGTERM) and returns what it wrote to stderr.
async fn serve_and_log(dir: &Path, log_table: &str, hookgate_log: Option<&str>, id: &str) -> String {
    let port = free_port();
    let config =
        TestConfig::new().ingest_port(port).http("rx", "http://127.0.0.1:9/").hmac_source("s", &["rx"]).write(dir);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[log]\n{log_table}\n")).unwrap();
    let stderr = dir.join(format!("stderr-{id}.log"));
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--config"]).arg(&config).env_remove("HOOKGATE_LOG").env_remove("HOOKGATE_LOG_FORMAT");
    if let Some(level) = hookgate_log {
        cmd.env("HOOKGATE_LOG", level);
    }
    let mut child = cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&stderr).unwrap()).spawn().unwrap();
    let client = reqwest::Client::new();
    let health = format!("http://127.0.0.1:{port}/healthz");
    assert!(eventually(Duration::from_secs(20), async || client.get(&health).send().await.is_ok()).await);
    // A body of its own, so runs in one directory (one database) are no duplicates.
    let body = format!("{{\"id\":\"{id}\"}}");
    let url = format!("http://127.0.0.1:{port}/hook/s");
    let resp = signed_post(&client, &url, body).header("x-request-id", id).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&stderr).unwrap()
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    // Unset, the format follows stderr: a file is no terminal, so JSON.
    for (table, id) in [("format = \"json\"", "req-json-1"), ("", "req-default-1")] {
        let log = serve_and_log(dir.path(), table, None, id).await;
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{log}")))
            .collect();
        let queued = lines.iter().find(|l| l["message"] == "event queued").unwrap_or_else(|| panic!("{log}"));
        assert_eq!(queued["level"], "INFO", "{queued}");
        assert_eq!(queued["spans"][0]["request_id"], id, "{queued}");
        assert!(lines.iter().any(|l| l["message"] == "hookgate ready"), "{log}");
    }
}

#[tokio::test]
async fn text_logs_are_for_people_and_keep_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log = serve_and_log(dir.path(), "format = \"text\"", None, "req-text-1").await;
    assert!(log.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()), "{log}");
    let queued = log.lines().find(|l| l.contains("event queued")).unwrap_or_else(|| panic!("{log}"));
    assert!(queued.contains("INFO"), "{queued}");
    assert!(queued.contains("request_id=req-text-1"), "{queued}");
    assert!(queued.contains("source=s"), "{queued}");
    // A file is no terminal: no colour codes.
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[tokio::test]
async fn the_level_filters_and_hookgate_log_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = serve_and_log(dir.path(), "format = \"json\"\nlevel = \"warn\"", None, "req-warn-1").await;
    assert!(!quiet.contains("event queued") && !quiet.contains("hookgate ready"), "{quiet}");
    let loud = serve_and_log(dir.path(), "format = \"json\"\nlevel = \"warn\"", Some("info"), "req-warn-2").await;
    assert!(loud.contains("event queued") && loud.contains("req-warn-2"), "{loud}");
    // A directive per module works too.
    let directive =
        serve_and_log(dir.path(), "format = \"json\"\nlevel = \"warn,hookgate::ingest=info\"", None, "req-warn-3")
            .await;
    assert!(directive.contains("event queued") && !directive.contains("hookgate ready"), "{directive}");
}

#[test]
fn check_names_a_bad_log_format_or_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().write(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[log]\nformat = \"xml\"\nlevel = \"loud[\"\ncolour = true\n")).unwrap();
    let out = Command::new(binary()).args(["check", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        "log.format: unknown format \"xml\"; accepted: \"json\", \"text\"",
        "log.level: invalid level",
        "log.colour: unknown key; accepted: format, level",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

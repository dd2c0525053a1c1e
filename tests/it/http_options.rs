//! HTTP destination options (CONTRACT §7): `method` and `headers`, static and secret-valued, seen
//! at a real receiver from a real `hookgate serve`; the secret never shown by the API, the UI, the
//! log, `check` or an `exec` command's environment; and `check` naming each bad key.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use toml::Value;

use crate::support::app::{ADMIN_TOKEN, SECRET};
use crate::support::node::Node;
use crate::support::{TestConfig, TestReceiver, binary, eventually, hmac_hex};

const TOKEN: &str = "crm-token-6b0d93e1";
const FILE_KEY: &str = "file-key-2a7c51f4";

/// `headers = { ... }` from `(name, value)` pairs, a value being TOML (a string or a table).
fn headers(pairs: &[(&str, Value)]) -> Value {
    Value::Table(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn config(dir: &Path, rx: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("crm-key.txt"), format!("{FILE_KEY}\n")).unwrap();
    let bearer = toml::toml! { secret_env = "T_CRM_TOKEN" prefix = "Bearer " };
    TestConfig::new()
        .admin_token()
        .fast_retries()
        .http("post", &format!("{rx}/post"))
        .set("headers", headers(&[("X-Team", "billing".into()), ("Authorization", bearer.into())]))
        .http("put", &format!("{rx}/put"))
        .set("method", "PUT")
        .set("headers", headers(&[("X-Key", toml::toml! { secret_file = "crm-key.txt" }.into())]))
        .http("patch", &format!("{rx}/patch"))
        .set("method", "PATCH")
        .set("headers", headers(&[("X-Team", "billing".into())]))
        .exec("env", &["sh", "-c", "env > exec-env.txt"])
        .hmac_source("s", &["post", "put", "patch", "env"])
        .write(dir)
}

fn check(config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["check", "--config"])
        .arg(config)
        .env_remove("HOOKGATE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN, FILE_KEY] {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_methods_reach_the_destination_and_the_secrets_are_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::scripted(200, &[500]).await; // one failed attempt: its error is logged too
    let config = config(dir.path(), &rx.url());
    let node = Node::spawn(&config, "all", &[("T_CRM_TOKEN", TOKEN), ("HOOKGATE_LOG", "trace")]);
    let client = reqwest::Client::new();

    let body = br#"{"id":"evt_http_options","amount":12}"#;
    let posted = client
        .post(node.url("/hook/s"))
        .header("x-signature", hmac_hex(SECRET, body))
        .header("content-type", "application/json")
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let event: serde_json::Value = posted.json().await.unwrap();
    let id = event["event_id"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(15), async || rx.received().iter().filter(|r| r.status == 200).count() == 3)
            .await,
        "each http destination got the event: {:?}",
        rx.received().iter().map(|r| (&r.method, &r.path, r.status)).collect::<Vec<_>>()
    );
    assert!(eventually(Duration::from_secs(10), async || dir.path().join("exec-env.txt").exists()).await);

    let got = |path: &str| {
        let all = rx.received();
        let last = all.iter().rev().find(|r| r.path == format!("/hook/{path}") && r.status == 200).cloned();
        last.unwrap_or_else(|| panic!("no delivery to /hook/{path}"))
    };
    let (post, put, patch) = (got("post"), got("put"), got("patch"));
    assert_eq!((post.method.as_str(), put.method.as_str(), patch.method.as_str()), ("POST", "PUT", "PATCH"));
    assert_eq!(post.header("x-team"), "billing");
    assert_eq!(post.header("authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(put.header("x-key"), FILE_KEY, "a secret file loses its trailing newline");
    assert_eq!((patch.header("x-team"), patch.header("authorization")), ("billing".into(), String::new()));
    for r in [&post, &put, &patch] {
        assert_eq!(&r.body[..], body, "{} {}", r.method, r.path);
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("webhook-id"), id);
        assert_eq!(r.header("x-hookgate-source"), "s");
    }
    // The failed first attempt was retried with the same headers.
    // (Any of the three destinations may have drawn the scripted 500.)
    let retried = rx.received().into_iter().find(|r| r.status == 500).unwrap();
    let again = [&post, &put, &patch].into_iter().find(|r| r.path == retried.path).unwrap();
    for name in ["x-team", "authorization", "x-key"] {
        assert_eq!(retried.header(name), again.header(name), "{name} on the retry of {}", retried.path);
    }

    // An exec command does not inherit the variable a header's secret comes from.
    let env = std::fs::read_to_string(dir.path().join("exec-env.txt")).unwrap();
    assert!(env.contains("HOOKGATE_EVENT_ID="), "the command's environment was written: {env}");
    assert!(!env.contains("T_CRM_TOKEN"), "{env}");
    assert_no_secret("an exec command's environment", &env);

    // Everything the admin listener shows: API, web UI, metrics, the OpenAPI document.
    let mut shown = String::new();
    for path in [
        "/api/events".to_string(),
        format!("/api/events/{id}"),
        "/api/deliveries".to_string(),
        "/api/deliveries?status=succeeded".to_string(),
        "/api/openapi.json".to_string(),
        "/".to_string(),
        "/ui.js".to_string(),
        "/metrics".to_string(),
    ] {
        let resp = client.get(node.admin_url(&path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert_no_secret(&path, &text);
        shown.push_str(&text);
    }
    assert!(shown.contains("evt_http_options") && shown.contains("HTTP 500"), "the API showed the event: {shown}");
    assert!(shown.contains("hookgate_"), "the metrics were read");

    let (code, out) = check(&config, &[("T_CRM_TOKEN", TOKEN)]);
    assert_eq!(code, Some(0), "{out}");
    assert_no_secret("check", &out);

    let log = node.log();
    assert!(log.contains("delivery failed") && log.contains("TRACE"), "the log was read at trace level: {log}");
    assert_no_secret("serve's log", &log);
}

#[test]
fn check_names_every_bad_http_option_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .http("crm", "http://127.0.0.1:9/crm")
        .set("method", "GET")
        .set(
            "headers",
            headers(&[
                ("Bad Name", "x".into()),
                ("Host", "evil.example".into()),
                ("X-Hookgate-Attempt", "1".into()),
                ("Authorization", toml::toml! { secret_env = "T_UNSET_CRM_TOKEN" prefix = "Bearer " }.into()),
            ]),
        )
        .exec("log", &["true"])
        .set("headers", headers(&[("X-Team", "billing".into())]))
        .set("method", "PUT")
        .hmac_source("s", &["crm", "log"])
        .write(dir.path());
    let (code, out) = check(&config, &[]);
    assert_eq!(code, Some(1), "{out}");
    for want in [
        "destinations[0] (crm).method: unknown method \"GET\"; accepted: \"POST\", \"PUT\", \"PATCH\"",
        "destinations[0] (crm).headers.\"Bad Name\": \"Bad Name\" is not a valid header name",
        "destinations[0] (crm).headers.Host: host cannot be set here",
        "destinations[0] (crm).headers.X-Hookgate-Attempt: x-hookgate-attempt cannot be set here",
        "destinations[0] (crm).headers.Authorization.secret_env: environment variable T_UNSET_CRM_TOKEN is not set",
        "destinations[1] (log).headers: not used by type = \"exec\"",
        "destinations[1] (log).method: not used by type = \"exec\"",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
    // `serve` stops at start for the same config, naming the destination's key and the variable.
    let out = Command::new(binary()).args(["serve", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("destinations[0] (crm).headers.Authorization.secret_env") && err.contains("T_UNSET_CRM_TOKEN")
    );
}

//! `hookgate events` and `hookgate replay` from outside: the real binary against a running app.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::app::{ADMIN_TOKEN, Extra, hmac_source};
use crate::support::{TestApp, TestReceiver, binary, eventually};

const FAST: &str = "[delivery]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\n";

/// Runs the binary off the runtime's threads; returns (exit code, stdout, stderr).
async fn hookgate(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(binary())
            .args(&args)
            .env_remove("HOOKGATE_CONFIG")
            .env_remove("HOOKGATE_ADMIN_URL")
            .env_remove("HOOKGATE_ADMIN_TOKEN")
            .env_remove("HOOKGATE_ADMIN_LISTEN")
            .envs(env)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn dead_event_app() -> (TestApp, TestReceiver, String) {
    let rx = TestReceiver::start(500).await;
    let body = format!(
        "{FAST}[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\nmax_attempts = 2\n\n{}",
        rx.url(),
        hmac_source("s", &["rx"])
    );
    let app = TestApp::spawn_extra(&Extra { admin: Extra::ADMIN_TOKEN, ..Extra::default() }, &body, Vec::new()).await;
    let id = app.post_signed("s", br#"{"id":"evt_cli"}"#).await.1["event_id"].as_str().unwrap().to_string();
    let store = app.store.clone();
    let dead = eventually(Duration::from_secs(10), async || {
        store.get_event(&id).await.unwrap().is_some_and(|e| e.summary.status == "dead")
    })
    .await;
    assert!(dead);
    (app, rx, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_show_and_replay_through_the_admin_api() {
    let (app, rx, id) = dead_event_app().await;
    let url = format!("http://{}", app.admin);
    let auth = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];

    let (code, out, err) = hookgate(&["events", "list", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ID"), "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(row.starts_with(&id) && row.contains(" s ") && row.contains("dead"), "full id, source, status: {out}");

    let (code, out, err) =
        hookgate(&["events", "list", "--status", "dead", "--source", "s", "--json", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["items"][0]["id"], id.as_str());
    let (_, out, _) =
        hookgate(&["events", "list", "--status", "succeeded", "--json", "--admin-url", &url], &auth).await;
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["items"], serde_json::json!([]));

    let (code, out, err) = hookgate(&["events", "show", &id, "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    for want in
        [id.as_str(), "x-signature: [redacted]", "evt_cli", "rx  dead  2 attempts", "HTTP 500", "receiver says hi"]
    {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (code, out, _) = hookgate(&["events", "show", &id, "--json", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["deliveries"][0]["attempt_log"][1]["status_code"], 500);

    rx.set_default(200);
    let (code, out, err) = hookgate(&["replay", &id, "--destination", "rx", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1 delivery"), "{out}");
    let store = app.store.clone();
    let id2 = id.clone();
    assert!(
        eventually(Duration::from_secs(5), async || store
            .get_event(&id2)
            .await
            .unwrap()
            .is_some_and(|e| e.summary.status == "succeeded"))
        .await
    );

    rx.set_default(500);
    let other = app.post_signed("s", br#"{"id":"evt_cli_2"}"#).await.1["event_id"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), async || store
            .get_event(&other)
            .await
            .unwrap()
            .is_some_and(|e| e.summary.status == "dead"))
        .await
    );
    let (code, out, err) = hookgate(&["replay", "--status", "dead", "--source", "s", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replayed 1 delivery in status dead"), "{out}");
    let (code, out, _) = hookgate(&["replay", "--status", "dead", "--json", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).unwrap()["replayed"].is_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_exit_1_when_refused_and_2_when_unreachable() {
    let (app, _rx, id) = dead_event_app().await;
    let url = format!("http://{}", app.admin);
    let auth = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];

    let (code, _, err) = hookgate(&["events", "show", "no-such-event", "--admin-url", &url], &auth).await;
    assert_eq!(code, 1, "not found: {err}");
    assert!(err.contains("404") && err.contains("no-such-event"), "{err}");
    let (code, _, err) = hookgate(&["events", "list", "--status", "lost", "--admin-url", &url], &auth).await;
    assert_eq!(code, 1, "bad filter: {err}");
    assert!(err.contains("400"), "{err}");
    let (code, _, err) = hookgate(&["events", "list", "--admin-url", &url], &[]).await;
    assert_eq!(code, 1, "no token: {err}");
    assert!(err.contains("401") && err.contains("HOOKGATE_ADMIN_TOKEN"), "{err}");
    let (code, _, err) = hookgate(&["events", "list", "--admin-url", &url], &[("HOOKGATE_ADMIN_TOKEN", "wrong")]).await;
    assert_eq!(code, 1, "wrong token: {err}");
    let (code, _, err) = hookgate(&["replay", &id, "--destination", "nowhere", "--admin-url", &url], &auth).await;
    assert_eq!(code, 1, "{err}");

    // Usage errors.
    for args in [&["replay"][..], &["replay", &id, "--status", "dead"], &["replay", "--source", "s"], &["events"]] {
        let (code, _, err) = hookgate(args, &auth).await;
        assert_eq!(code, 1, "{args:?}: {err}");
    }

    // Nothing listens there: exit 2, saying where it tried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead_url = format!("http://{closed}");
    for args in [&["events", "list"][..], &["events", "show", "x"], &["replay", "--status", "dead"]] {
        let mut args = args.to_vec();
        args.extend(["--admin-url", &dead_url]);
        let (code, _, err) = hookgate(&args, &auth).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("cannot reach the admin API"), "{err}");
    }
    let (code, _, err) = hookgate(&["events", "list"], &[("HOOKGATE_ADMIN_URL", dead_url.as_str())]).await;
    assert_eq!(code, 2, "HOOKGATE_ADMIN_URL is read: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_comes_from_the_config_without_its_secrets() {
    let (app, _rx, id) = dead_event_app().await;
    // A config that names the running admin listener, and a secret this shell does not have:
    // the CLI reads admin.listen only.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ops.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"{}\"\n\n[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n\
             [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = {{ scheme = \"hmac-sha256\", secret_env = \"HG_CLI_UNSET_SECRET\" }}\n\
             deliver_to = [\"rx\"]\n",
            app.admin
        ),
    )
    .unwrap();
    let auth = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];
    let (code, out, err) = hookgate(&["events", "list", "--config", config.to_str().unwrap()], &auth).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let env = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN), ("HOOKGATE_CONFIG", config.to_str().unwrap())];
    let (code, out, err) = hookgate(&["events", "show", &id], &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("evt_cli"), "{out}");
    let (code, _, err) = hookgate(&["events", "list", "--config", "/nonexistent/hookgate.toml"], &auth).await;
    assert_eq!(code, 1, "{err}");
}

/// Text from outside (a dedupe key, a body, a command's stderr) reaches the terminal without the
/// invisible characters that make it read as something else: bidi controls (U+202E reverses what
/// follows), isolates, zero-width characters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_commands_neutralise_bidi_controls_and_invisible_characters() {
    let body = format!(
        "{FAST}[[destinations]]\nname = \"cmd\"\ntype = \"exec\"\n\
         command = [\"sh\", \"-c\", \"printf 'bad\\\\342\\\\200\\\\256gnp.exe' >&2; exit 1\"]\nmax_attempts = 1\n\n\
         [[sources]]\nname = \"s\"\npath = \"/hook/s\"\n\
         verify = {{ scheme = \"hmac-sha256\", header = \"X-Signature\", secret_file = \"secret.txt\" }}\n\
         dedupe = {{ json_pointer = \"/id\" }}\ndeliver_to = [\"cmd\"]\n"
    );
    let app = TestApp::spawn_extra(&Extra { admin: Extra::ADMIN_TOKEN, ..Extra::default() }, &body, Vec::new()).await;
    let sent = "{\"id\":\"evt_\u{202E}gnp.exe\",\"note\":\"a\u{2066}b\u{200B}c\u{061C}d\u{200F}e\"}";
    let id = app.post_signed("s", sent.as_bytes()).await.1["event_id"].as_str().unwrap().to_string();
    let store = app.store.clone();
    let dead = eventually(Duration::from_secs(10), async || {
        store.get_event(&id).await.unwrap().is_some_and(|e| e.summary.status == "dead")
    })
    .await;
    assert!(dead);
    let url = format!("http://{}", app.admin);
    let auth = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];
    let hidden = ['\u{202E}', '\u{2066}', '\u{200B}', '\u{061C}', '\u{200F}'];

    let (code, list, err) = hookgate(&["events", "list", "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    let (code, show, err) = hookgate(&["events", "show", &id, "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");
    for out in [&list, &show] {
        assert!(!out.contains(hidden), "{out:?}");
    }
    assert!(list.contains("evt_\u{FFFD}gnp.exe"), "the dedupe key: {list:?}");
    assert!(show.contains("a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}e"), "the body: {show:?}");
    assert!(show.contains("bad\u{FFFD}gnp.exe"), "the command's stderr: {show:?}");
    // --json is for programs: the text as stored.
    let (_, json, _) = hookgate(&["events", "show", &id, "--json", "--admin-url", &url], &auth).await;
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap()["body"], sent);
}

/// A self-signed certificate for the loopback address, and its key, as PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// With `[admin] tls` in the config, the CLI speaks HTTPS to the admin listener and trusts the
/// config's own certificate (self-signed here, in no system store); another certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_trust_the_configs_admin_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let mut tls = toml::Table::new();
    tls.insert("cert_file".into(), "cert.pem".into());
    tls.insert("key_file".into(), "key.pem".into());
    crate::support::TestConfig::new()
        .admin("tls", toml::Value::Table(tls))
        .admin_token()
        .http("rx", "http://127.0.0.1:9/")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let app = TestApp::start_in(std::sync::Arc::new(dir), Vec::new()).await;
    let (status, json) = app.post_signed("s", br#"{"id":"evt_tls"}"#).await;
    assert_eq!(status, 200);
    let id = json["event_id"].as_str().unwrap().to_string();

    // What an operator's config names: the listener's address and its certificate (relative path).
    let ops = tempfile::tempdir().unwrap();
    std::fs::write(ops.path().join("cert.pem"), &cert).unwrap();
    let config = ops.path().join("ops.toml");
    let write = |cert_file: &str| {
        let text = format!(
            "[admin]\nlisten = \"{}\"\ntls = {{ cert_file = \"{cert_file}\", key_file = \"key.pem\" }}\n",
            app.admin
        );
        std::fs::write(&config, text).unwrap();
    };
    write("cert.pem");
    let auth = [("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];
    let path = config.to_str().unwrap();
    let (code, out, err) = hookgate(&["events", "list", "--config", path], &auth).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = hookgate(&["events", "show", &id, "--config", path], &auth).await;
    assert_eq!((code, out.contains("evt_tls")), (0, true), "{out}{err}");
    // An explicit https:// URL trusts the config's certificate too.
    let url = format!("https://{}", app.admin);
    let (code, _, err) = hookgate(&["events", "list", "--config", path, "--admin-url", &url], &auth).await;
    assert_eq!(code, 0, "{err}");

    // A config naming some other certificate: the listener's is not trusted, exit 2.
    std::fs::write(ops.path().join("other.pem"), self_signed().0).unwrap();
    write("other.pem");
    let (code, _, err) = hookgate(&["events", "list", "--config", path], &auth).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach the admin API at https://"), "{err}");
    // One that cannot be read is the user's to fix, named by its key.
    write("missing.pem");
    let (code, _, err) = hookgate(&["events", "list", "--config", path], &auth).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admin.tls.cert_file: cannot read"), "{err}");
    app.stop().await;
}

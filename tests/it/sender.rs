//! The sender's side (CONTRACT §9), from outside: each provider's URL check gets the exact
//! answer it expects, only after its check; handshakes are never stored or delivered and are
//! counted; a GET is 405 except where the scheme has a GET handshake; a source's `response`
//! replaces the JSON answer to a stored event.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::{TestApp, TestConfig, TestReceiver, metric};

const VERIFY_TOKEN: &str = "meta-verify-token";
/// RFC 8032 §7.1 TEST 1's key pair.
const DISCORD_SECRET_KEY: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const DISCORD_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn mac(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn now() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string()
}

fn verify(scheme: &str, extra: &[(&str, &str)]) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("scheme".into(), scheme.into());
    if !matches!(scheme, "discord") {
        t.insert("secret_file".into(), "secret.txt".into());
    }
    for (k, v) in extra {
        t.insert((*k).into(), (*v).into());
    }
    t
}

/// A real `hookgate serve` with one source per handshake scheme, all delivering to `rx`
/// (a process, so the Meta verify token can come from its environment as configured).
fn gateway(rx: &TestReceiver) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .http("rx", &rx.url())
        .source("slack", verify("slack", &[]), &["rx"])
        .source("zoom", verify("zoom", &[]), &["rx"])
        .source("twitter", verify("twitter", &[]), &["rx"])
        .source("meta", verify("meta", &[("verify_token_env", "T_META_VERIFY_TOKEN")]), &["rx"])
        .source("graph", verify("microsoft-graph", &[]), &["rx"])
        .source("dropbox", verify("dropbox", &[]), &["rx"])
        .source("discord", verify("discord", &[("public_key", DISCORD_PUBLIC_KEY)]), &["rx"])
        .source("okta", verify("okta", &[]), &["rx"])
        .hmac_source("plain", &["rx"]);
    let path = config.write(dir.path());
    (Node::spawn(&path, "all", &[("T_META_VERIFY_TOKEN", VERIFY_TOKEN)]), dir)
}

/// (status, content type, nosniff header, body) of a request.
async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String, Option<String>, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), url).body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let h = |n: &str| resp.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let (ct, nosniff) = (h("content-type").unwrap_or_default(), h("x-content-type-options"));
    (resp.status().as_u16(), ct, nosniff, resp.bytes().await.unwrap().to_vec())
}

fn slack_headers(body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let ts = now();
    let sig = hex::encode(mac(secret, &[b"v0:", ts.as_bytes(), b":", body]));
    vec![
        ("x-slack-signature", format!("v0={sig}")),
        ("x-slack-request-timestamp", ts),
        ("content-type", "application/json".into()),
    ]
}

fn zoom_headers(body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let ts = now();
    let sig = hex::encode(mac(secret, &[b"v0:", ts.as_bytes(), b":", body]));
    vec![("x-zm-signature", format!("v0={sig}")), ("x-zm-request-timestamp", ts)]
}

fn discord_headers(body: &[u8]) -> Vec<(&'static str, String)> {
    let key = SigningKey::from_bytes(&hex::decode(DISCORD_SECRET_KEY).unwrap().try_into().unwrap());
    let ts = now();
    let sig = key.sign(&[ts.as_bytes(), body].concat());
    vec![("x-signature-ed25519", hex::encode(sig.to_bytes())), ("x-signature-timestamp", ts)]
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

#[tokio::test]
async fn sender_handshakes_get_their_exact_answers_and_are_never_stored() {
    let rx = TestReceiver::start(200).await;
    let (node, _dir) = gateway(&rx);
    let slack = br#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let zoom = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680}"#;
    let zoom_answer = format!(
        r#"{{"encryptedToken":"{}","plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#,
        hex::encode(mac(SECRET, &[b"qgg8vlvZRS6UYooatFL8Aw"]))
    );
    let crc = format!(r#"{{"response_token":"sha256={}"}}"#, STANDARD.encode(mac(SECRET, &[b"crc-123"])));
    let ping = br#"{"type":1,"id":"1","application_id":"2"}"#;
    let okta = vec![("authorization", SECRET.to_string()), ("x-okta-verification-challenge", "ch-42".into())];
    let meta = "/hook/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify-token";
    for (name, method, path, headers, body, want_ct, want_body, nosniff) in [
        (
            "slack",
            "POST",
            "/hook/slack".to_string(),
            slack_headers(slack, SECRET),
            &slack[..],
            JSON,
            r#"{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#.to_string(),
            false,
        ),
        ("zoom", "POST", "/hook/zoom".into(), zoom_headers(zoom, SECRET), &zoom[..], JSON, zoom_answer, false),
        ("twitter", "GET", "/hook/twitter?crc_token=crc-123".into(), vec![], &b""[..], JSON, crc, false),
        ("meta", "GET", meta.into(), vec![], &b""[..], TEXT, "1158201444".into(), false),
        (
            "graph",
            "POST",
            "/hook/graph?validationToken=Validation%3A%20Testing%20client%20application".into(),
            vec![("content-type", "text/plain".into())],
            &b""[..],
            TEXT,
            "Validation: Testing client application".into(),
            false,
        ),
        ("dropbox", "GET", "/hook/dropbox?challenge=dbx-ch".into(), vec![], &b""[..], TEXT, "dbx-ch".into(), true),
        (
            "discord",
            "POST",
            "/hook/discord".into(),
            discord_headers(ping),
            &ping[..],
            JSON,
            r#"{"type":1}"#.into(),
            false,
        ),
        ("okta", "GET", "/hook/okta".into(), okta, &b""[..], JSON, r#"{"verification":"ch-42"}"#.into(), false),
    ] {
        let (status, ct, sniff, got) = send(method, &node.url(&path), &headers, body).await;
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&got));
        assert_eq!(ct, want_ct, "{name}");
        assert_eq!(String::from_utf8_lossy(&got), want_body, "{name}");
        assert_eq!(sniff.as_deref(), nosniff.then_some("nosniff"), "{name}");
    }
    let metrics = reqwest::get(node.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    for name in ["slack", "zoom", "twitter", "meta", "graph", "dropbox", "discord", "okta"] {
        let series = format!("hookgate_handshakes_total{{source=\"{name}\"}}");
        assert_eq!(metric(&metrics, &series), Some(1.0), "{series} in\n{metrics}");
    }
    let events: serde_json::Value = reqwest::get(node.admin_url("/api/events")).await.unwrap().json().await.unwrap();
    assert_eq!(events["items"].as_array().map(Vec::len), Some(0), "a handshake was stored: {events}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0, "a handshake was delivered");
}

#[tokio::test]
async fn sender_handshakes_that_fail_their_check_are_refused() {
    let rx = TestReceiver::start(200).await;
    let (node, _dir) = gateway(&rx);
    let slack = br#"{"challenge":"c","type":"url_verification"}"#;
    let zoom = br#"{"event":"endpoint.url_validation","payload":{"plainToken":"p"}}"#;
    let ping = br#"{"type":1}"#;
    let mut bad_discord = discord_headers(ping);
    bad_discord[1].1 = (bad_discord[1].1.parse::<u64>().unwrap() + 1).to_string();
    for (name, method, path, headers, body, want) in [
        ("slack, wrong secret", "POST", "/hook/slack", slack_headers(slack, "other"), &slack[..], 401),
        ("slack, unsigned", "POST", "/hook/slack", vec![], &slack[..], 401),
        ("zoom, wrong secret", "POST", "/hook/zoom", zoom_headers(zoom, "other"), &zoom[..], 401),
        ("discord, timestamp changed", "POST", "/hook/discord", bad_discord, &ping[..], 401),
        ("discord, unsigned", "POST", "/hook/discord", vec![], &ping[..], 401),
        (
            "okta, wrong secret",
            "GET",
            "/hook/okta",
            vec![("authorization", "nope".into()), ("x-okta-verification-challenge", "c".into())],
            &b""[..],
            401,
        ),
        ("okta, no challenge", "GET", "/hook/okta", vec![("authorization", SECRET.into())], &b""[..], 400),
        (
            "meta, wrong token",
            "GET",
            "/hook/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x",
            vec![],
            &b""[..],
            403,
        ),
        ("meta, no token", "GET", "/hook/meta?hub.mode=subscribe&hub.challenge=1", vec![], &b""[..], 403),
        (
            "meta, no challenge",
            "GET",
            "/hook/meta?hub.mode=subscribe&hub.verify_token=meta-verify-token",
            vec![],
            &b""[..],
            400,
        ),
        ("twitter, no crc_token", "GET", "/hook/twitter", vec![], &b""[..], 400),
        ("dropbox, no challenge", "GET", "/hook/dropbox?other=1", vec![], &b""[..], 400),
        (
            "graph, unsigned notification",
            "POST",
            "/hook/graph",
            vec![],
            &br#"{"value":[{"clientState":"x"}]}"#[..],
            401,
        ),
    ] {
        let (status, ct, _, got) = send(method, &node.url(path), &headers, body).await;
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&got));
        assert_eq!(ct, JSON, "{name}: errors keep their JSON");
    }
    let events: serde_json::Value = reqwest::get(node.admin_url("/api/events")).await.unwrap().json().await.unwrap();
    assert_eq!(events["items"].as_array().map(Vec::len), Some(0), "{events}");
    let metrics = reqwest::get(node.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "hookgate_handshakes_total{source=\"meta\"}"), Some(0.0), "{metrics}");
    assert_eq!(rx.count(), 0);
}

#[tokio::test]
async fn sender_get_is_405_unless_the_scheme_has_a_get_handshake() {
    let rx = TestReceiver::start(200).await;
    let (node, _dir) = gateway(&rx);
    for path in ["/hook/plain", "/hook/slack", "/hook/zoom", "/hook/discord", "/hook/graph"] {
        let resp = reqwest::get(node.url(path)).await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], "POST", "{path}");
    }
    // And ordinary signed events still go through the handshake schemes.
    let event = br#"{"event":"meeting.started","payload":{"object":{"id":"1"}}}"#;
    let (status, _, _, body) = send("POST", &node.url("/hook/zoom"), &zoom_headers(event, SECRET), event).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let graph = format!(r#"{{"value":[{{"clientState":"{SECRET}","changeType":"created"}}]}}"#);
    let (status, _, _, body) = send("POST", &node.url("/hook/graph"), &[], graph.as_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(crate::support::eventually(std::time::Duration::from_secs(5), async || rx.count() == 2).await);
}

#[tokio::test]
async fn sender_response_replaces_the_json_answer_of_stored_events() {
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new().http("rx", &rx.url()).hmac_source("custom", &["rx"]).set(
        "response",
        toml::toml! { status = 202
        content_type = "text/plain; charset=utf-8"
        body = "OK" },
    );
    let app = TestApp::spawn_config(&config).await;
    let body = br#"{"id":"r1"}"#;
    let sig = crate::support::sign::hmac_hex(SECRET, body);
    for round in ["queued", "duplicate"] {
        let resp = app.post("/hook/custom", body, &[("x-signature", &sig)]).await;
        assert_eq!(resp.status().as_u16(), 202, "{round}");
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8", "{round}");
        assert_eq!(resp.text().await.unwrap(), "OK", "{round}");
    }
    let resp = app.post("/hook/custom", body, &[("x-signature", "00")]).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "invalid signature");
    assert!(crate::support::eventually(std::time::Duration::from_secs(5), async || rx.count() == 1).await);
}

#[test]
fn sender_response_status_must_be_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .http("rx", "http://127.0.0.1:9/x")
        .hmac_source("custom", &["rx"])
        .set("response", toml::toml! { status = 302 });
    let path = config.write(dir.path());
    let err = hookgate::Config::load(&path).unwrap_err().to_string();
    assert!(err.contains("sources[0] (custom).response.status") && err.contains("302 is not 2xx"), "{err}");
}

/// Runs `hookgate send ARGS --config CONFIG --url URL` with the Meta verify token in its
/// environment; (exit code, stdout, stderr).
fn hookgate_send(config: &std::path::Path, url: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(crate::support::binary())
        .arg("send")
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--url", url])
        .env("T_META_VERIFY_TOKEN", VERIFY_TOKEN)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_send_handshake_is_answered_like_the_provider_expects() {
    let rx = TestReceiver::start(200).await;
    let (node, dir) = gateway(&rx);
    let config = dir.path().join("hookgate.toml");
    let url = node.url("");
    for name in ["slack", "zoom", "twitter", "meta", "graph", "dropbox", "okta"] {
        let (config, url) = (config.clone(), url.clone());
        let (code, out, err) =
            tokio::task::spawn_blocking(move || hookgate_send(&config, &url, &[name, "--handshake"])).await.unwrap();
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.starts_with("200"), "{name}: {out}");
    }
    for (name, want) in [("plain", "has no handshake"), ("discord", "has no handshake")] {
        let (code, _, err) = hookgate_send(&config, &url, &[name, "--handshake"]);
        assert_eq!(code, 1, "{name}");
        assert!(err.contains(want), "{name}: {err}");
    }
    let (code, _, err) = hookgate_send(&config, &url, &["discord"]);
    assert_eq!(code, 1);
    assert!(err.contains("public key"), "{err}");
    let metrics = reqwest::get(node.admin_url("/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "hookgate_handshakes_total{source=\"okta\"}"), Some(1.0), "{metrics}");
    assert_eq!(rx.count(), 0);
}

/// Every named scheme that `send` can sign for (all but the public-key ones), each at
/// `/hook/NAME` with two secrets (the current one first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_send_signs_like_every_new_scheme_and_the_gateway_accepts_it() {
    let rx = TestReceiver::start(200).await;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(dir.path().join("old.txt"), "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0").unwrap();
    std::fs::write(dir.path().join("sw.txt"), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let mut config = TestConfig::new().http("rx", &rx.url());
    let mut names = Vec::new();
    for preset in hookgate::verify::presets::PRESETS.iter().filter(|p| p.name != "meta") {
        names.push(preset.name);
    }
    names.extend(["mailgun", "okta", "microsoft-graph", "svix", "clerk", "resend"]);
    for name in &names {
        let secret = if matches!(*name, "svix" | "clerk" | "resend") { "sw.txt" } else { "secret.txt" };
        let mut verify = toml::Table::new();
        verify.insert("scheme".into(), (*name).into());
        verify.insert("secrets_file".into(), vec![secret, "old.txt"].into());
        if matches!(*name, "square" | "hubspot") {
            verify.insert("public_url".into(), format!("https://hooks.example.com/hook/{name}").into());
        }
        config = config.source(name, verify, &["rx"]);
    }
    let mut custom = toml::Table::new();
    for (k, v) in [
        ("scheme", "hmac"),
        ("header", "X-Custom-Signature"),
        ("algorithm", "sha512"),
        ("encoding", "base64"),
        ("format", "t={timestamp},v1={signature}"),
        ("signed", "{method}.{path}.{timestamp}.{body}"),
        ("secret_file", "secret.txt"),
    ] {
        custom.insert(k.into(), v.into());
    }
    names.push("custom");
    config = config.source("custom", custom, &["rx"]);
    config.write(dir.path());
    let app = TestApp::start_in(dir.clone(), Vec::new()).await;
    let path = dir.path().join("hookgate.toml");
    let url = app.url("");
    for name in names.clone() {
        let (path, url) = (path.clone(), url.clone());
        let (code, out, err) = tokio::task::spawn_blocking(move || hookgate_send(&path, &url, &[name])).await.unwrap();
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains("\"queued\""), "{name}: {out}");
    }
    let want = names.len();
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(10), async || rx.count() == want).await,
        "{} of {want} delivered",
        rx.count()
    );
}

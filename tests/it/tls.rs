//! HTTPS on the ingest and admin listeners (`tls = { cert_file, key_file }`): HTTP/2 and HTTP/1.1
//! by ALPN, `check` naming a bad pair, and a certificate rotated by SIGHUP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Certificate, Version};
use toml::Value;

use crate::support::node::Node;
use crate::support::tls_proxy::TestCa;
use crate::support::{TestApp, TestConfig, TestReceiver, binary, eventually, signed_post};

const NAMES: &[&str] = &["127.0.0.1", "localhost"];

fn tls_table(cert: &str, key: &str) -> Value {
    let mut t = toml::Table::new();
    t.insert("cert_file".into(), cert.into());
    t.insert("key_file".into(), key.into());
    Value::Table(t)
}

/// Writes a certificate from `ca` and its key as `cert.pem` and `key.pem` in `dir`.
fn write_pair(dir: &Path, ca: &TestCa) {
    let (cert, key) = ca.issue_pem(NAMES);
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// A client that trusts only `ca`, with a connection pool of its own.
fn client(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder().tls_certs_only([Certificate::from_pem(ca.pem.as_bytes()).unwrap()]).build().unwrap()
}

async fn post_signed(client: &reqwest::Client, url: &str, body: &str) -> reqwest::Response {
    signed_post(client, url, body).send().await.unwrap()
}

#[tokio::test]
async fn an_https_post_is_stored_and_delivered_over_http2_and_http1() {
    let ca = TestCa::new("hookgate test CA");
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca);
    // Relative paths resolve against the config's directory.
    TestConfig::new()
        .server("tls", tls_table("cert.pem", "key.pem"))
        .server("max_body_bytes", 1000)
        .http("rx", &rx.url())
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let app = TestApp::start_in(Arc::new(dir), Vec::new()).await;
    let url = format!("https://127.0.0.1:{}/hook/s", app.ingest.port());

    // ALPN picks HTTP/2 when the client offers it.
    let h2 = client(&ca);
    let resp = post_signed(&h2, &url, r#"{"n":1}"#).await;
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["status"], "queued", "{json}");
    // Many requests at once on the one HTTP/2 connection, each stored.
    let posts = (2..22).map(|n| {
        let (h2, url) = (h2.clone(), url.clone());
        async move { post_signed(&h2, &url, &format!(r#"{{"n":{n}}}"#)).await.status().as_u16() }
    });
    assert_eq!(futures::future::join_all(posts).await, vec![200; 20]);
    // The ingest checks hold under HTTP/2: a bad signature, a body over max_body_bytes.
    let bad = h2.post(&url).header("x-signature", "00").body("{}").send().await.unwrap();
    assert_eq!((bad.version(), bad.status().as_u16()), (Version::HTTP_2, 401));
    let big = "x".repeat(2000);
    let too_big = post_signed(&h2, &url, &big).await;
    assert_eq!(too_big.status(), 413);
    // A streamed body without content-length is bounded too.
    let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 400])));
    let streamed =
        h2.post(&url).header("x-signature", "00").body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(streamed.status(), 413);

    // HTTP/1.1 when the client offers only that.
    let h1 = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let resp = post_signed(&h1, &url, r#"{"n":100}"#).await;
    assert_eq!((resp.version(), resp.status().as_u16()), (Version::HTTP_11, 200));

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new().post(format!("http://127.0.0.1:{}/hook/s", app.ingest.port())).send().await;
    assert!(plain.is_err() || plain.unwrap().status() == 400, "plain HTTP must not be served");

    assert!(eventually(Duration::from_secs(10), async || rx.count() == 22).await, "delivered: {}", rx.count());
    app.stop().await;
}

#[tokio::test]
async fn the_admin_listener_serves_https() {
    let ca = TestCa::new("hookgate admin CA");
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &ca);
    TestConfig::new()
        .admin("tls", tls_table("cert.pem", "key.pem"))
        .admin_token()
        .http("rx", "http://127.0.0.1:9/")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let app = TestApp::start_in(Arc::new(dir), Vec::new()).await;
    let client = client(&ca);
    let base = format!("https://127.0.0.1:{}", app.admin.port());
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let events =
        client.get(format!("{base}/api/events")).bearer_auth(crate::support::app::ADMIN_TOKEN).send().await.unwrap();
    assert_eq!((events.version(), events.status().as_u16()), (Version::HTTP_2, 200));
    // The ingest listener is still plain HTTP.
    let (status, _) = app.post_signed("s", b"{}").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[test]
fn check_names_an_unreadable_file_and_a_mismatched_pair() {
    let (a, b) = (TestCa::new("a"), TestCa::new("b"));
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = a.issue_pem(NAMES);
    let (_, key_b) = b.issue_pem(NAMES);
    std::fs::write(dir.path().join("a.pem"), cert_a).unwrap();
    std::fs::write(dir.path().join("b.key"), key_b).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let config = TestConfig::new()
        .server("tls", tls_table("missing.pem", "b.key"))
        .admin("tls", tls_table("a.pem", "b.key"))
        .write(dir.path());
    let run = |config: &Path| {
        let out = std::process::Command::new(binary()).args(["check", "--config"]).arg(config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = run(&config);
    assert_eq!(code, Some(1), "{err}");
    for want in ["server.tls.cert_file: cannot read", "missing.pem", "admin.tls: key_file does not belong to cert_file"]
    {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let config = TestConfig::new().server("tls", tls_table("empty.pem", "")).write(dir.path());
    let (code, err) = run(&config);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("server.tls.key_file: missing"), "{err}");
    let config = TestConfig::new().server("tls", tls_table("empty.pem", "b.key")).write(dir.path());
    let (_, err) = run(&config);
    assert!(err.contains("server.tls: cert_file holds no certificate"), "{err}");
}

/// SIGHUP re-reads the certificate: new connections get the new one, an open connection keeps
/// working, and a broken pair leaves the last good one in place.
#[tokio::test]
async fn a_certificate_rotated_by_sighup_is_served_to_new_connections() {
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), &old_ca);
    let config = TestConfig::new()
        .server("tls", tls_table("cert.pem", "key.pem"))
        .http("rx", "http://127.0.0.1:9/")
        .hmac_source("s", &["rx"])
        .write(dir.path());
    let node = Node::spawn(&config, "ingest", &[]);
    let url = format!("https://{}/hook/s", node.ingest.unwrap());
    let (old, new) = (client(&old_ca), client(&new_ca));
    assert_eq!(post_signed(&old, &url, r#"{"n":1}"#).await.status(), 200);
    assert!(new.get(&url).send().await.is_err(), "the new CA cannot know the old certificate");

    write_pair(dir.path(), &new_ca);
    node.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), async || node.count_logged("certificate reloaded") == 1).await,
        "{}",
        node.log()
    );
    // The connection opened before the rotation goes on (HTTP/2, kept by the pool).
    assert_eq!(post_signed(&old, &url, r#"{"n":2}"#).await.status(), 200);
    assert_eq!(post_signed(&new, &url, r#"{"n":3}"#).await.status(), 200);
    assert!(client(&old_ca).get(&url).send().await.is_err(), "a new connection must see the new certificate");

    // A broken pair makes the reload invalid: nothing changes and the last good pair stays.
    std::fs::write(dir.path().join("key.pem"), old_ca.issue_pem(NAMES).1).unwrap();
    node.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = async || {
        node.log().lines().any(|l| l.contains("config not reloaded") && l.contains("does not belong to cert_file"))
    };
    assert!(eventually(Duration::from_secs(10), refused).await, "{}", node.log());
    assert_eq!(post_signed(&client(&new_ca), &url, r#"{"n":4}"#).await.status(), 200);
    assert_eq!(node.count_logged("certificate reloaded"), 1, "{}", node.log());
}

//! TLS to PostgreSQL, per `sslmode` and `sslrootcert`: real `hookgate serve` processes on a fresh
//! schema of the test server, reached through a TLS-terminating proxy whose certificate each test
//! picks. Skipped without HOOKGATE_TEST_DATABASE_URL (and failing in CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::app::SECRET;
use crate::support::node::Node;
use crate::support::pg::fresh_database;
use crate::support::tls_proxy::{TestCa, TlsProxy};
use crate::support::{TestConfig, TestReceiver, eventually, hmac_hex};

/// `database` (a fresh schema's URL) pointed at `localhost:PORT` instead, with `params` added.
fn through(database: &str, port: u16, params: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(database).unwrap();
    url.set_host(Some("localhost")).unwrap();
    url.set_port(Some(port)).unwrap();
    for (k, v) in params {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

/// Starts a node on `url`, stores one event through it and returns the node.
async fn stores_an_event(config: &Path, url: &str) -> Node {
    let node = Node::spawn(config, "all", &[("HOOKGATE_DATABASE_URL", url)]);
    let body = r#"{"id":"evt_tls"}"#;
    let resp = reqwest::Client::new()
        .post(node.url("/hook/s"))
        .header("x-signature", hmac_hex(SECRET, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}: {}", node.log());
    node
}

/// Runs a node on `url` that must fail to start; returns what it wrote to stderr.
fn refused(config: &Path, url: &str) -> String {
    let mut child = Command::new(crate::support::binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKGATE_DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("hookgate started on {url}, which it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{url}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What each test starts from: a fresh schema, a receiver, a config delivering to it, the test's
/// CA (its certificate at `root`) and another one that nothing trusts.
struct Setup {
    database: String,
    dir: tempfile::TempDir,
    rx: TestReceiver,
    config: PathBuf,
    root: String,
    ca: TestCa,
    other_ca: TestCa,
}

async fn setup() -> Option<Setup> {
    let database = fresh_database().await?;
    let dir = tempfile::tempdir().unwrap();
    let rx = TestReceiver::start(200).await;
    let config =
        TestConfig::new().storage("pool_size", 2).http("d", &rx.url()).hmac_source("s", &["d"]).write(dir.path());
    let ca = TestCa::new("hookgate test CA");
    let root = dir.path().join("ca.pem");
    std::fs::write(&root, &ca.pem).unwrap();
    let root = root.to_str().unwrap().to_string();
    Some(Setup { database, dir, rx, config, root, ca, other_ca: TestCa::new("someone else's CA") })
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let Some(t) = setup().await else { return };
    let verify_full = [("sslmode", "verify-full"), ("sslrootcert", t.root.as_str())];

    // The right root and name: stored and delivered, over TLS only.
    let proxy = TlsProxy::start(&t.database, t.ca.issue(&["localhost"])).await;
    let node = stores_an_event(&t.config, &through(&t.database, proxy.port, &verify_full)).await;
    assert!(eventually(Duration::from_secs(10), async || t.rx.count() == 1).await, "{}", node.log());
    assert!(proxy.tls_connections() > 0);
    assert_eq!(proxy.plain_connections(), 0);
    drop(node);

    // A certificate from a root not trusted: refused at start, saying why.
    let proxy = TlsProxy::start(&t.database, t.other_ca.issue(&["localhost"])).await;
    let log = refused(&t.config, &through(&t.database, proxy.port, &verify_full));
    assert!(log.contains("UnknownIssuer"), "{log}");

    // The trusted root, but issued for another host.
    let proxy = TlsProxy::start(&t.database, t.ca.issue(&["db.example.com"])).await;
    let log = refused(&t.config, &through(&t.database, proxy.port, &verify_full));
    assert!(log.contains("not valid for name \"localhost\""), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_ca_checks_only_the_chain() {
    let Some(t) = setup().await else { return };
    let proxy = TlsProxy::start(&t.database, t.ca.issue(&["db.example.com"])).await;
    let url = through(&t.database, proxy.port, &[("sslmode", "verify-ca"), ("sslrootcert", &t.root)]);
    drop(stores_an_event(&t.config, &url).await);
    assert!(proxy.tls_connections() > 0);

    // `require` with a root file is `verify-ca`, as in libpq.
    let proxy = TlsProxy::start(&t.database, t.other_ca.issue(&["localhost"])).await;
    let log =
        refused(&t.config, &through(&t.database, proxy.port, &[("sslmode", "require"), ("sslrootcert", &t.root)]));
    assert!(log.contains("UnknownIssuer"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_and_require_encrypt_without_checking_and_disable_stays_plain() {
    let Some(t) = setup().await else { return };
    for (params, tls) in
        [(&[][..], true), (&[("sslmode", "require")][..], true), (&[("sslmode", "disable")][..], false)]
    {
        let proxy = TlsProxy::start(&t.database, t.other_ca.issue(&["db.example.com"])).await;
        drop(stores_an_event(&t.config, &through(&t.database, proxy.port, params)).await);
        if tls {
            assert!(proxy.tls_connections() > 0 && proxy.plain_connections() == 0, "{params:?}");
        } else {
            assert!(proxy.plain_connections() > 0 && proxy.tls_connections() == 0, "{params:?}");
        }
    }

    // A server without TLS: `prefer` goes on in plain, `require` refuses to.
    let proxy = TlsProxy::without_tls(&t.database).await;
    drop(stores_an_event(&t.config, &through(&t.database, proxy.port, &[])).await);
    assert!(proxy.plain_connections() > 0);
    let log = refused(&t.config, &through(&t.database, proxy.port, &[("sslmode", "require")]));
    assert!(log.contains("server does not support TLS"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_is_presented_when_the_server_asks_for_one() {
    let Some(t) = setup().await else { return };
    let clients = TestCa::new("client CA");
    let (cert, key) = clients.client_files(t.dir.path());
    let proxy = TlsProxy::requiring_client_cert(&t.database, t.ca.issue(&["localhost"]), &clients).await;
    let verify_full = [("sslmode", "verify-full"), ("sslrootcert", t.root.as_str())];
    let with_cert = [&verify_full[..], &[("sslcert", cert.as_str()), ("sslkey", key.as_str())]].concat();
    drop(stores_an_event(&t.config, &through(&t.database, proxy.port, &with_cert)).await);
    assert!(proxy.tls_connections() > 0);

    // Without one, the server refuses the handshake.
    let log = refused(&t.config, &through(&t.database, proxy.port, &verify_full));
    assert!(log.contains("CertificateRequired"), "{log}");
    // A certificate without its key is a config problem, named before anything connects.
    let log = refused(&t.config, &through(&t.database, proxy.port, &[("sslmode", "require"), ("sslcert", &cert)]));
    assert!(log.contains("sslcert and sslkey go together"), "{log}");
}

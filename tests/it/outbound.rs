//! The http destination's connections (`src/destination/http_client.rs`): HTTPS verified against
//! the platform's trust store (which `SSL_CERT_FILE` replaces), and the environment's proxy
//! (`HTTP_PROXY`, with `NO_PROXY` exempting a host).

use std::sync::Arc;
use std::time::Duration;

use crate::support::node::Node;
use crate::support::tcp_proxy::TcpProxy;
use crate::support::tls_proxy::{TestCa, TlsFront};
use crate::support::{TestApp, TestConfig, TestReceiver, eventually, signed_post};

async fn post(node: &Node, body: &str) -> String {
    let resp = signed_post(&reqwest::Client::new(), &node.url("/hook/s"), body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    json["event_id"].as_str().unwrap().to_string()
}

/// A receiver behind HTTPS with a certificate of a test CA: delivered when the process trusts that
/// CA (`SSL_CERT_FILE`), with the URL's user and password as Basic auth; a failed attempt naming the
/// certificate when it does not.
#[tokio::test]
async fn an_https_destination_is_delivered_only_when_its_certificate_is_trusted() {
    let ca = TestCa::new("hookgate outbound test CA");
    let rx = TestReceiver::start(200).await;
    let front = TlsFront::start(rx.addr(), ca.issue(&["localhost"])).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    // The URL's user and password are sent as Basic auth, not as part of the request line.
    let url = format!("https://user:pa%20ss@localhost:{}/hook", front.port);
    let config = TestConfig::new().fast_retries().http("rx", &url).set("max_attempts", 2).hmac_source("s", &["rx"]);

    let trusting = tempfile::tempdir().unwrap();
    let node = Node::spawn(&config.write(trusting.path()), "all", &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    let id = post(&node, r#"{"n":1}"#).await;
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await, "{}", node.log());
    let got = &rx.received()[0];
    assert_eq!((got.header("webhook-id"), got.header("x-hookgate-source")), (id, "s".to_string()));
    assert_eq!(&got.body[..], br#"{"n":1}"#);
    assert!(got.header("user-agent").starts_with("hookgate/"), "{:?}", got.header("user-agent"));
    assert_eq!(got.header("authorization"), "Basic dXNlcjpwYSBzcw==");
    assert!(front.handshakes() >= 1);

    // This test process trusts only the platform's store, which has never heard of the test CA.
    let untrusting = tempfile::tempdir().unwrap();
    config.write(untrusting.path());
    let app = TestApp::start_in(Arc::new(untrusting), Vec::new()).await;
    let (status, json) = app.post_signed("s", br#"{"n":2}"#).await;
    assert_eq!(status, 200);
    let id = json["event_id"].as_str().unwrap().to_string();
    let dead = async || app.store.get_event(&id).await.unwrap().unwrap().summary.status == "dead";
    assert!(eventually(Duration::from_secs(10), dead).await);
    let event = app.store.get_event(&id).await.unwrap().unwrap();
    let error = event.deliveries[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("connection failed") && error.contains("certificate"), "{error}");
    assert_eq!(rx.count(), 1, "nothing reached the receiver without a trusted certificate");
}

/// With `HTTP_PROXY` set, a destination is reached through the proxy (here a TCP relay to the
/// receiver, in front of a destination URL where nothing listens), and one whose host `NO_PROXY`
/// names is reached directly.
#[tokio::test]
async fn the_environment_proxy_carries_destinations_that_no_proxy_does_not_exempt() {
    let (proxied_rx, direct_rx) = (TestReceiver::start(200).await, TestReceiver::start(200).await);
    let mut proxy = TcpProxy::stopped(proxied_rx.addr());
    proxy.start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .fast_retries()
        .http("via-proxy", "http://127.0.0.1:9/nothing-listens-here")
        .http("direct", &format!("http://localhost:{}/hook", direct_rx.addr().port()))
        .hmac_source("s", &["via-proxy", "direct"])
        .write(dir.path());
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let node = Node::spawn(&config, "all", &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "localhost")]);
    let id = post(&node, r#"{"n":1}"#).await;
    let both = async || proxied_rx.count() == 1 && direct_rx.count() == 1;
    assert!(eventually(Duration::from_secs(10), both).await, "{}", node.log());
    for rx in [&proxied_rx, &direct_rx] {
        assert_eq!(rx.received()[0].header("webhook-id"), id);
    }
}

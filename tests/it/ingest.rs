//! The ingest listener's status table (CONTRACT §3), from outside.

use crate::support::{TestApp, TestConfig, TestReceiver, hmac_hex};

/// `config` plus a receiver `rx`, an hmac source `plain` and a source `json` deduplicated on `/id`.
async fn app(config: TestConfig) -> (TestApp, TestReceiver) {
    let rx = TestReceiver::start(200).await;
    let config = config
        .hmac_source("plain", &["rx"])
        .http("rx", &rx.url())
        .source("json", toml::toml! { scheme = "hmac-sha256" secret_file = "secret.txt" }, &["rx"])
        .set("dedupe", toml::toml! { json_pointer = "/id" });
    (TestApp::spawn_config(&config).await, rx)
}

#[tokio::test]
async fn signed_request_is_queued_with_an_event_id() {
    let (app, _rx) = app(TestConfig::new()).await;
    let (status, json) = app.post_signed("plain", br#"{"hello":"world"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "queued");
    assert!(json["event_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn statuses_of_the_contract() {
    let (app, _rx) = app(TestConfig::new().server("max_body_bytes", 1000)).await;
    let body = br#"{"id":"e1"}"#;
    let good = hmac_hex(crate::support::app::SECRET, body);
    let wrong = hmac_hex("other-secret", body);
    let big = vec![b'a'; 1001];
    let big_sig = hmac_hex(crate::support::app::SECRET, &big);
    let not_json = b"not json";
    let not_json_sig = hmac_hex(crate::support::app::SECRET, not_json);
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("unknown path", "/nope", body.to_vec(), vec![("x-signature", &good)], 404, "unregistered endpoint"),
        ("missing signature", "/hook/plain", body.to_vec(), vec![], 401, "invalid signature"),
        ("wrong signature", "/hook/plain", body.to_vec(), vec![("x-signature", &wrong)], 401, "invalid signature"),
        ("garbage signature", "/hook/plain", body.to_vec(), vec![("x-signature", "zz")], 401, "invalid signature"),
        ("too large", "/hook/plain", big, vec![("x-signature", &big_sig)], 413, "payload too large"),
        (
            "not JSON where JSON is needed",
            "/hook/json",
            not_json.to_vec(),
            vec![("x-signature", &not_json_sig)],
            400,
            "invalid JSON",
        ),
    ];
    for (name, path, body, headers, want_status, want_error) in cases {
        let resp = app.post(path, &body, &headers).await;
        assert_eq!(resp.status().as_u16(), want_status, "case: {name}");
        assert!(resp.headers().contains_key("x-request-id"), "case: {name}");
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"], want_error, "case: {name}");
    }
    let get = app.client.get(app.url("/hook/plain")).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.json::<serde_json::Value>().await.unwrap()["error"], "method not allowed");
}

#[tokio::test]
async fn too_large_without_content_length_is_413() {
    let (app, _rx) = app(TestConfig::new().server("max_body_bytes", 1000)).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'a'; 800]), Ok(vec![b'a'; 800])];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = app.client.post(app.url("/hook/plain")).header("x-signature", "00").body(body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}

#[tokio::test]
async fn duplicates_answer_the_first_event_id_and_deliver_once() {
    let (app, rx) = app(TestConfig::new()).await;
    let (_, first) = app.post_signed("plain", b"same body").await;
    let (status, again) = app.post_signed("plain", b"same body").await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "duplicate");
    assert_eq!(again["event_id"], first["event_id"]);
    // Dedupe by JSON pointer: different bodies, same id.
    let (_, a) = app.post_signed("json", br#"{"id":"evt_1","n":1}"#).await;
    let (_, b) = app.post_signed("json", br#"{"id":"evt_1","n":2}"#).await;
    assert_eq!(b["status"], "duplicate");
    assert_eq!(a["event_id"], b["event_id"]);
    // A pointer absent from valid JSON falls back to the body hash; the event is accepted.
    let (status, c) = app.post_signed("json", br#"{"other":1}"#).await;
    assert_eq!((status, c["status"].as_str()), (200, Some("queued")));
    assert!(crate::support::eventually(std::time::Duration::from_secs(5), async || rx.count() >= 3).await);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 3, "one delivery per distinct event");
}

#[tokio::test]
async fn request_id_is_kept_when_sane_and_replaced_otherwise() {
    let (app, _rx) = app(TestConfig::new()).await;
    let get = |id: &'static str| app.client.get(app.url("/healthz")).header("x-request-id", id).send();
    assert_eq!(get("abc-123").await.unwrap().headers()["x-request-id"], "abc-123");
    let replaced = get("bad id!").await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id!");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let admin_ready = app.client.get(format!("http://{}/readyz", app.admin)).send().await.unwrap();
    assert_eq!(admin_ready.status().as_u16(), 200);
}

/// Sends raw bytes (no client-side URL normalisation) and returns the status code.
async fn raw_status(app: &TestApp, request: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.ingest).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0)
}

#[tokio::test]
async fn path_tricks_and_broken_requests_get_contract_statuses() {
    let (app, _rx) = app(TestConfig::new()).await;
    let long = format!("/hook/{}", "a".repeat(10_000));
    for (name, path, want) in [
        ("dot segments", "/hook/../hook/plain", 404),
        ("encoded slash", "/hook%2Fplain", 404),
        ("double slash", "//hook/plain", 404),
        ("trailing slash", "/hook/plain/", 404),
        ("very long path", long.as_str(), 404),
    ] {
        let req = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}");
        assert_eq!(raw_status(&app, req.as_bytes()).await, want, "case: {name}");
    }
    // Invalid UTF-8 in a header value: refused as a bad signature, not a panic.
    let mut req = b"POST /hook/plain HTTP/1.1\r\nhost: x\r\nx-signature: \xff\xfe\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_vec();
    assert_eq!(raw_status(&app, &req).await, 401);
    req.clear();
    // Garbage instead of HTTP.
    let status = raw_status(&app, b"\x16\x03\x01 not http at all\r\n\r\n").await;
    assert_eq!(status, 400);
    // The server is still fine.
    let (status, _) = app.post_signed("plain", b"still here").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_timestamp_outside_the_tolerance_is_401() {
    let config = TestConfig::new()
        .http("rx", "http://127.0.0.1:9/")
        .source("strict", toml::toml! { scheme = "stripe" secret_file = "secret.txt" }, &["rx"])
        .source("lenient", toml::toml! { scheme = "stripe" secret_file = "secret.txt" tolerance = "10m" }, &["rx"]);
    let app = TestApp::spawn_config(&config).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let payload = br#"{"id":"evt_t","object":"event"}"#;
    // Stripe-Signature: t=TIMESTAMP,v1=HMAC(secret, "TIMESTAMP.BODY").
    let sign = |t: u64| {
        let signed = [format!("{t}.").as_bytes(), payload].concat();
        format!("t={t},v1={}", hmac_hex(crate::support::app::SECRET, &signed))
    };
    for (path, age, want) in [
        ("/hook/strict", 60, 200),
        ("/hook/strict", 301, 401), // the default tolerance is 5 minutes
        ("/hook/lenient", 400, 200),
        ("/hook/lenient", 601, 401),
    ] {
        let resp = app.post(path, payload, &[("stripe-signature", &sign(now - age))]).await;
        assert_eq!(resp.status().as_u16(), want, "{path}, signed {age} s ago");
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().http("rx", "http://127.0.0.1:9/").hmac_source("s", &["rx"]).write(dir.path());
    let node = crate::support::node::Node::spawn(&config, "ingest", &[]);
    let client = reqwest::Client::new();
    let signed = hmac_hex(crate::support::app::SECRET, b"{}");
    for (id, sig) in [("req-queued-1", signed.as_str()), ("req-rejected-2", "0000")] {
        let resp = client
            .post(node.url("/hook/s"))
            .header("x-request-id", id)
            .header("x-signature", sig)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-request-id"], id);
    }
    let expected = [("req-queued-1", "event queued"), ("req-rejected-2", "request rejected")];
    let logged = async || expected.iter().all(|(id, m)| node.log().lines().any(|l| l.contains(id) && l.contains(m)));
    assert!(crate::support::eventually(std::time::Duration::from_secs(5), logged).await, "{}", node.log());
    let log = node.log();
    for (id, message) in expected {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(id)).collect();
        assert!(lines.iter().any(|l| l.contains(message)), "no {message:?} line with {id}:\n{log}");
        let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(line["spans"][0]["request_id"], id, "{line}");
    }
}

/// A JSON-pointer dedupe key keeps the JSON type: the number 123 and the string "123" are two
/// events, and each one's retry is a duplicate of it.
#[tokio::test]
async fn a_pointer_key_keeps_its_json_type() {
    let (app, _rx) = app(TestConfig::new()).await;
    let post = async |body: &[u8]| {
        let sig = hmac_hex(crate::support::app::SECRET, body);
        let resp = app.post("/hook/json", body, &[("x-signature", &sig)]).await;
        assert_eq!(resp.status(), 200);
        let json: serde_json::Value = resp.json().await.unwrap();
        (json["status"].as_str().unwrap().to_string(), json["event_id"].as_str().unwrap().to_string())
    };
    let number = post(br#"{"id":123}"#).await;
    let string = post(br#"{"id":"123"}"#).await;
    assert_eq!((number.0.as_str(), string.0.as_str()), ("queued", "queued"), "two events");
    assert_ne!(number.1, string.1);
    assert_eq!(post(br#"{"id":123,"retry":1}"#).await, ("duplicate".to_string(), number.1.clone()));
    assert_eq!(post(br#"{"id":"123","retry":1}"#).await, ("duplicate".to_string(), string.1.clone()));
    let boolean = post(br#"{"id":true}"#).await;
    assert_eq!(boolean.0, "queued", "true is not the string \"true\" either");
}

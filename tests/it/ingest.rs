//! The ingest listener's status table (CONTRACT §3), from outside.

use crate::support::app::hmac_source;
use crate::support::{TestApp, TestReceiver, hmac_hex};

async fn app(extra: &str) -> (TestApp, TestReceiver) {
    let rx = TestReceiver::start(200).await;
    let body = format!(
        "{}\n[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"{}\"\n\n\
         [[sources]]\nname = \"json\"\npath = \"/hook/json\"\n\
         verify = {{ scheme = \"hmac-sha256\", secret_file = \"secret.txt\" }}\n\
         dedupe = {{ json_pointer = \"/id\" }}\ndeliver_to = [\"rx\"]\n",
        hmac_source("plain", &["rx"]),
        rx.url()
    );
    (TestApp::spawn_with(extra, &body, Vec::new()).await, rx)
}

#[tokio::test]
async fn signed_request_is_queued_with_an_event_id() {
    let (app, _rx) = app("").await;
    let (status, json) = app.post_signed("plain", br#"{"hello":"world"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "queued");
    assert!(json["event_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn statuses_of_the_contract() {
    let (app, _rx) = app("max_body_bytes = 1000").await;
    let body = br#"{"id":"e1"}"#;
    let good = hmac_hex(crate::support::app::SECRET, body);
    let wrong = hmac_hex("other-secret", body);
    let big = vec![b'a'; 1001];
    let big_sig = hmac_hex(crate::support::app::SECRET, &big);
    let not_json = b"not json";
    let not_json_sig = hmac_hex(crate::support::app::SECRET, not_json);
    let cases: Vec<(&str, &str, Vec<u8>, Vec<(&str, &str)>, u16, &str)> = vec![
        ("unknown path", "/nope", body.to_vec(), vec![("x-signature", &good)], 404, "unregistered endpoint"),
        (
            "path trick",
            "/hook/../hook/plain",
            body.to_vec(),
            vec![("x-signature", &good)],
            404,
            "unregistered endpoint",
        ),
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
    let (app, _rx) = app("max_body_bytes = 1000").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b'a'; 800]), Ok(vec![b'a'; 800])];
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let resp = app.client.post(app.url("/hook/plain")).header("x-signature", "00").body(body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}

#[tokio::test]
async fn duplicates_answer_the_first_event_id_and_deliver_once() {
    let (app, rx) = app("").await;
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
    let (app, _rx) = app("").await;
    let get = |id: &'static str| app.client.get(app.url("/healthz")).header("x-request-id", id).send();
    assert_eq!(get("abc-123").await.unwrap().headers()["x-request-id"], "abc-123");
    let replaced = get("bad id!").await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "bad id!");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let admin_ready = app.client.get(format!("http://{}/readyz", app.admin)).send().await.unwrap();
    assert_eq!(admin_ready.status().as_u16(), 200);
}

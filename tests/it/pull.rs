//! Pull destinations (CONTRACT §10), from outside: a real gateway on port 0, events posted to its
//! ingest listener and claimed, acked and nacked over HTTP on its admin listener. Timelines
//! (retry_after, leases, backoff) run on a `ManualClock` the test moves.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use hookgate::clock::ManualClock;
use serde_json::{Value, json};

use crate::support::app::ADMIN_TOKEN;
use crate::support::{TestApp, TestConfig, TestReceiver, rule};

const LAPTOP_TOKEN: &str = "laptop-token-0123456789";
const OTHER_TOKEN: &str = "other-token-0123456789";

/// A gateway with the admin token, pull destinations `laptop` and `other` (each with its own
/// token) and an http one, fed by source `s`; `tune` adjusts the config. Its clock stands still
/// until the test moves it.
async fn start(tune: impl FnOnce(TestConfig) -> TestConfig, receiver: &str) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_924_992_000)));
    (start_on(tune, receiver, None, clock.clone()).await, clock)
}

/// [`start`] on `storage` (a PostgreSQL URL; else SQLite in the temp dir) with time from `clock`.
async fn start_on(
    tune: impl FnOnce(TestConfig) -> TestConfig,
    receiver: &str,
    storage: Option<&str>,
    clock: hookgate::clock::SharedClock,
) -> TestApp {
    let mut config = TestConfig::new()
        .admin_token()
        .pull("laptop")
        .set("token_file", "laptop-token.txt")
        .pull("other")
        .set("token_file", "other-token.txt")
        .http("web", receiver);
    if let Some(url) = storage {
        config = config.storage("url", url);
    }
    let config = tune(config);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    config.write(dir.path());
    std::fs::write(dir.path().join("laptop-token.txt"), LAPTOP_TOKEN).unwrap();
    std::fs::write(dir.path().join("other-token.txt"), OTHER_TOKEN).unwrap();
    TestApp::start_with_clock(dir, Vec::new(), clock).await
}

/// `POST` on the admin API with `token`; returns (status, JSON).
async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = app.client.post(app.admin_url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn claim(app: &TestApp, destination: &str, query: &str) -> Vec<Value> {
    let (status, body) =
        post(app, &format!("/api/destinations/{destination}/claim?{query}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

async fn ingest(app: &TestApp, body: &str) -> String {
    let (status, json) = app.post_signed("s", body.as_bytes()).await;
    assert_eq!(status, 200, "{json}");
    json["event_id"].as_str().unwrap().to_string()
}

/// The event's delivery to `destination`.
async fn delivery(app: &TestApp, event_id: &str, destination: &str) -> hookgate::store::DeliveryInfo {
    let ev = app.store.get_event(event_id).await.unwrap().unwrap();
    ev.deliveries.into_iter().find(|d| d.destination == destination).unwrap()
}

#[tokio::test]
async fn a_claim_hands_out_the_event_and_an_ack_finishes_it() {
    let web = TestReceiver::start(200).await;
    let (app, clock) = start(|c| c.hmac_source("s", &["laptop", "web"]), &web.url()).await;
    let id = ingest(&app, r#"{"n":1}"#).await;

    let items = claim(&app, "laptop", "wait=0s").await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["event_id"], id.as_str());
    assert_eq!(item["source"], "s");
    assert_eq!(item["content_type"], "application/json");
    assert_eq!(item["body"], r#"{"n":1}"#);
    assert_eq!(item["attempt"], 1);
    assert_eq!(item["headers"]["x-signature"], "[redacted]", "the stored, redacted headers: {item}");
    let lease_until = humantime::parse_rfc3339(item["lease_until"].as_str().unwrap()).unwrap();
    assert_eq!(lease_until, clock.now_plus(Duration::from_secs(30)), "the default lease is 30s");
    assert_eq!(delivery(&app, &id, "laptop").await.status, "in_flight");
    assert!(claim(&app, "laptop", "wait=0s").await.is_empty(), "a held delivery is not claimed twice");

    let delivery_id = item["delivery_id"].as_i64().unwrap();
    let (status, body) = post(&app, &format!("/api/deliveries/{delivery_id}/ack"), Some(ADMIN_TOKEN), None).await;
    assert_eq!((status, &body["status"]), (200, &json!("succeeded")), "{body}");
    let d = delivery(&app, &id, "laptop").await;
    assert_eq!((d.status.as_str(), d.attempt_log.len()), ("succeeded", 1));
    assert_eq!(d.attempt_log[0].outcome, "success");
    // The push workers never touched the pull destination, and did deliver the http one.
    assert!(crate::support::eventually(Duration::from_secs(10), async || web.count() == 1).await);
    assert!(claim(&app, "laptop", "wait=0s").await.is_empty(), "acked: nothing left");
    let (again, _) = post(&app, &format!("/api/deliveries/{delivery_id}/ack"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(again, 200, "a second ack changes nothing and is not an error");
}

#[tokio::test]
async fn a_waiting_claim_returns_as_soon_as_an_event_is_ingested() {
    let (app, _clock) = start(|c| c.hmac_source("s", &["laptop"]), "http://127.0.0.1:9/").await;
    let (client, url) = (app.client.clone(), app.admin_url("/api/destinations/laptop/claim?wait=60s"));
    let waiting = tokio::spawn(async move {
        let resp = client.post(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        resp.json::<Value>().await.unwrap()
    });
    // Let the claim find nothing and start waiting (if it has not yet, it finds the event at once).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "an empty claim waits");
    let id = ingest(&app, "{}").await;
    // Sooner than the 5 s fallback re-check (pull::RECHECK): the commit woke it.
    let got = tokio::time::timeout(Duration::from_secs(4), waiting).await.expect("woken by the ingest").unwrap();
    assert_eq!(got["items"][0]["event_id"], id.as_str(), "{got}");
}

#[tokio::test]
async fn a_nack_with_retry_after_brings_the_event_back_after_that_wait() {
    let (app, clock) =
        start(|c| c.delivery("initial_backoff", "1s").hmac_source("s", &["laptop"]), "http://127.0.0.1:9/").await;
    let id = ingest(&app, "{}").await;
    let item = claim(&app, "laptop", "wait=0s").await.remove(0);
    let nack = format!("/api/deliveries/{}/nack", item["delivery_id"]);
    let (status, body) =
        post(&app, &nack, Some(ADMIN_TOKEN), Some(json!({"error": "receiver said 503", "retry_after": "1h"}))).await;
    assert_eq!((status, &body["status"]), (200, &json!("failed")), "{body}");
    let d = delivery(&app, &id, "laptop").await;
    assert_eq!(d.next_attempt_at.unwrap() - d.attempt_log[0].at, 3_600_000, "max(backoff, retry_after)");
    assert_eq!(d.attempt_log[0].error.as_deref(), Some("nacked: receiver said 503"));
    let (twice, _) = post(&app, &nack, Some(ADMIN_TOKEN), None).await;
    assert_eq!(twice, 409, "only a delivery in flight can be nacked");

    clock.advance(Duration::from_secs(59 * 60));
    assert!(claim(&app, "laptop", "wait=0s").await.is_empty(), "not before its hour");
    clock.advance(Duration::from_secs(61));
    let again = claim(&app, "laptop", "wait=0s").await;
    assert_eq!((again.len(), &again[0]["attempt"]), (1, &json!(2)), "back after the hour, as attempt 2");
}

#[tokio::test]
async fn a_lease_that_runs_out_is_a_failed_attempt_and_the_event_comes_back_after_backoff() {
    let (app, clock) = start(
        |c| c.delivery("initial_backoff", "1m").pull("short").set("lease", "1s").hmac_source("s", &["short"]),
        "http://127.0.0.1:9/",
    )
    .await;
    let id = ingest(&app, "{}").await;
    let first = claim(&app, "short", "wait=0s").await.remove(0);
    clock.advance(Duration::from_secs(2));
    // The lease ran out: recorded as a timed-out attempt, retried after its backoff (30–60 s).
    assert!(claim(&app, "short", "wait=0s").await.is_empty(), "not claimable during its backoff");
    let d = delivery(&app, &id, "short").await;
    assert_eq!((d.status.as_str(), d.attempt_log.len()), ("failed", 1), "{d:?}");
    assert_eq!(d.attempt_log[0].outcome, "timeout");
    let wait = d.next_attempt_at.unwrap() - d.attempt_log[0].at;
    assert!((30_000..=60_000).contains(&wait), "a minute of backoff with jitter: {wait} ms");
    clock.advance(Duration::from_secs(61));
    let second = claim(&app, "short", "wait=0s").await.remove(0);
    assert_eq!((&second["attempt"], &second["delivery_id"]), (&json!(2), &first["delivery_id"]));
}

#[tokio::test]
async fn max_attempts_make_a_nacked_delivery_dead() {
    let (app, clock) =
        start(|c| c.delivery("max_attempts", 2).fast_retries().hmac_source("s", &["laptop"]), "http://127.0.0.1:9/")
            .await;
    let id = ingest(&app, "{}").await;
    for attempt in 1..=2 {
        let item = claim(&app, "laptop", "wait=0s").await.remove(0);
        assert_eq!(item["attempt"], attempt);
        let (status, body) =
            post(&app, &format!("/api/deliveries/{}/nack", item["delivery_id"]), Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], if attempt == 2 { "dead" } else { "failed" });
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(delivery(&app, &id, "laptop").await.status, "dead");
    assert!(claim(&app, "laptop", "wait=0s").await.is_empty(), "dead: waits for a replay");
    let (status, _) = post(&app, &format!("/api/events/{id}/replay"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(claim(&app, "laptop", "wait=0s").await.len(), 1, "replayed: claimable again");
}

#[tokio::test]
async fn a_destinations_token_opens_its_claim_ack_and_nack_and_nothing_else() {
    let web = TestReceiver::start(200).await;
    let (app, _clock) = start(|c| c.hmac_source("s", &["laptop", "other", "web"]), &web.url()).await;
    ingest(&app, "{}").await;
    let laptop = Some(LAPTOP_TOKEN);
    let (status, mine) = post(&app, "/api/destinations/laptop/claim?wait=0s", laptop, None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let (status, _) = post(&app, "/api/destinations/other/claim?wait=0s", laptop, None).await;
    assert_eq!(status, 403, "another destination's claim");
    let other = claim(&app, "other", "wait=0s").await.remove(0);
    let (status, _) = post(&app, &format!("/api/deliveries/{}/ack", other["delivery_id"]), laptop, None).await;
    assert_eq!(status, 403, "another destination's delivery");
    let (status, _) = post(&app, "/api/destinations/laptop/pause", laptop, None).await;
    assert_eq!(status, 403, "the rest of the API");
    let (status, _) = post(&app, "/api/deliveries/replay?status=dead", laptop, None).await;
    assert_eq!(status, 403);
    let events = app.client.get(app.admin_url("/api/events")).bearer_auth(LAPTOP_TOKEN).send().await.unwrap();
    assert_eq!(events.status(), 403);
    for wrong in [None, Some("not-a-token")] {
        let (status, _) = post(&app, "/api/destinations/laptop/claim?wait=0s", wrong, None).await;
        assert_eq!(status, 401, "{wrong:?}");
    }
    let (status, body) =
        post(&app, &format!("/api/deliveries/{}/ack", mine["items"][0]["delivery_id"]), laptop, None).await;
    assert_eq!((status, &body["status"]), (200, &json!("succeeded")), "its own delivery: {body}");
    let (status, _) = post(&app, "/api/destinations/nosuch/claim?wait=0s", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404, "an unknown destination");
    let (status, body) = post(&app, "/api/destinations/web/claim?wait=0s", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404, "an http destination is not pulled: {body}");
}

#[tokio::test]
async fn a_claim_takes_a_batch_of_up_to_max() {
    let (app, _clock) = start(|c| c.hmac_source("s", &["laptop"]), "http://127.0.0.1:9/").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(ingest(&app, &format!(r#"{{"n":{n}}}"#)).await);
    }
    let first = claim(&app, "laptop", "max=3&wait=0s").await;
    let second = claim(&app, "laptop", "max=3&wait=0s").await;
    assert_eq!((first.len(), second.len()), (3, 2));
    let mut got: Vec<String> =
        first.iter().chain(&second).map(|i| i["event_id"].as_str().unwrap().to_string()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "each event once");
    assert_eq!(claim(&app, "laptop", "wait=0s").await.len(), 0);
    for bad in ["max=0", "max=101", "max=x", "wait=2m", "wait=soon", "limit=3"] {
        let (status, body) =
            post(&app, &format!("/api/destinations/laptop/claim?{bad}"), Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_claim_returns_what_the_routes_transform_makes() {
    let (app, _clock) = start(
        |c| c.hmac_source("s", &[]).set("deliver_to", vec![rule("laptop", None, Some("{n: (.body.n + 1)}"))]),
        "http://127.0.0.1:9/",
    )
    .await;
    ingest(&app, r#"{"n":41}"#).await;
    let item = claim(&app, "laptop", "wait=0s").await.remove(0);
    assert_eq!((&item["body"], &item["content_type"]), (&json!(r#"{"n":42}"#), &json!("application/json")));
}

/// Two gateways on one PostgreSQL database: a claim waiting on one wakes when the other ingests
/// (NOTIFY), an ack on either settles it, and a nack's retry_after and an expired lease follow the
/// clock as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_claim_on_one_node_wakes_when_another_ingests_and_settles_anywhere() {
    let Some(database) = crate::support::pg::fresh_database().await else { return };
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_924_992_000)));
    let tune = |c: TestConfig| {
        c.delivery("initial_backoff", "1m").pull("short").set("lease", "1s").hmac_source("s", &["laptop", "short"])
    };
    let a = start_on(tune, "http://127.0.0.1:9/", Some(&database), clock.clone()).await;
    let b = start_on(tune, "http://127.0.0.1:9/", Some(&database), clock.clone()).await;

    let (client, url) = (b.client.clone(), b.admin_url("/api/destinations/laptop/claim?wait=60s"));
    let waiting = tokio::spawn(async move {
        client.post(url).bearer_auth(LAPTOP_TOKEN).send().await.unwrap().json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = ingest(&a, r#"{"on":"a"}"#).await;
    // Sooner than the 5 s fallback re-check: node A's NOTIFY woke node B's claim.
    let got = tokio::time::timeout(Duration::from_secs(4), waiting).await.expect("woken across nodes").unwrap();
    let item = &got["items"][0];
    assert_eq!(item["event_id"], id.as_str(), "{got}");

    // Nacked on node A with a retry_after: back on node B after that time only.
    let nack = format!("/api/deliveries/{}/nack", item["delivery_id"]);
    let (status, body) = post(&a, &nack, Some(LAPTOP_TOKEN), Some(json!({"retry_after": "1h"}))).await;
    assert_eq!((status, &body["status"]), (200, &json!("failed")), "{body}");
    assert!(claim(&b, "laptop", "wait=0s").await.is_empty());
    clock.advance(Duration::from_secs(3601));
    let again = claim(&b, "laptop", "wait=0s").await.remove(0);
    assert_eq!(again["attempt"], 2);
    let (status, _) =
        post(&a, &format!("/api/deliveries/{}/ack", again["delivery_id"]), Some(LAPTOP_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(delivery(&a, &id, "laptop").await.status, "succeeded");

    // A lease that runs out on the node that handed it out is a timed-out attempt there.
    claim(&a, "short", "wait=0s").await.remove(0);
    clock.advance(Duration::from_secs(2));
    assert!(claim(&a, "short", "wait=0s").await.is_empty(), "in its backoff, not claimable at once");
    let d = delivery(&a, &id, "short").await;
    assert_eq!((d.status.as_str(), d.attempt_log[0].outcome.as_str()), ("failed", "timeout"), "{d:?}");
}

trait NowPlus {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime {
        use hookgate::clock::Clock;
        // Whole milliseconds, as stored.
        let now = self.now();
        let ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        UNIX_EPOCH + Duration::from_millis(ms) + by
    }
}

/// Whether `value` has the shape docs/openapi.json gives `schema` (required keys, no others, each
/// of its declared type; nested `$ref`s followed). schemathesis does not fuzz these endpoints
/// (tests/it/openapi.rs says why), so this holds them to the document.
fn conforms(doc: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    };
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if !types.is_empty() && !types.contains(&kind) {
        return Err(format!("{value} is {kind}, not {types:?}"));
    }
    if let (Value::Object(map), Some(props)) = (value, schema["properties"].as_object()) {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            map.get(key).ok_or_else(|| format!("{key} missing from {value}"))?;
        }
        for (key, v) in map {
            let sub = props.get(key).ok_or_else(|| format!("{key} is not documented"))?;
            conforms(doc, sub, v)?;
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, schema.get("items")) {
        items.iter().try_for_each(|i| conforms(doc, sub, i))?;
    }
    Ok(())
}

#[tokio::test]
async fn claim_ack_and_nack_answer_in_the_shapes_docs_openapi_json_gives() {
    let doc: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let schema =
        |path: &str| doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"].clone();
    let (app, _clock) = start(|c| c.hmac_source("s", &["laptop"]), "http://127.0.0.1:9/").await;
    ingest(&app, "{}").await;
    app.post(
        "/hook/s",
        &[0xff, 0xfe],
        &[("x-signature", &crate::support::hmac_hex(crate::support::app::SECRET, &[0xff, 0xfe]))],
    )
    .await;
    let (status, page) = post(&app, "/api/destinations/laptop/claim?max=2&wait=0s", Some(ADMIN_TOKEN), None).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 2), "{page}");
    conforms(&doc, &schema("/api/destinations/{name}/claim"), &page).unwrap();
    assert!(page["items"].as_array().unwrap().iter().any(|i| i["body_encoding"] == "base64"), "{page}");
    let (first, second) = (&page["items"][0]["delivery_id"], &page["items"][1]["delivery_id"]);
    let (_, acked) = post(&app, &format!("/api/deliveries/{first}/ack"), Some(ADMIN_TOKEN), None).await;
    conforms(&doc, &schema("/api/deliveries/{id}/ack"), &acked).unwrap();
    let (_, nacked) = post(&app, &format!("/api/deliveries/{second}/nack"), Some(ADMIN_TOKEN), Some(json!({}))).await;
    conforms(&doc, &schema("/api/deliveries/{id}/nack"), &nacked).unwrap();
    assert_eq!(nacked["status"], "failed");
    let (status, _) = post(&app, "/api/deliveries/1/nack", Some(ADMIN_TOKEN), Some(json!({"retry": "1s"}))).await;
    assert_eq!(status, 400, "an unknown key in a nack");
}

//! Alerts from outside (CONTRACT §8): events of the built-in source `hookgate`, stored and
//! delivered to real receivers through ordinary destinations, with the fields §8 lists; a circuit
//! opening and closing; no loops; filters and transforms on the alert routes.

use std::time::Duration;

use serde_json::Value;

use crate::support::{TestApp, TestConfig, TestReceiver, eventually, rule};

async fn get(app: &TestApp, path: &str) -> Value {
    reqwest::get(app.admin_url(path)).await.unwrap().json().await.unwrap()
}

/// The stored events of the built-in source, newest first.
async fn alert_events(app: &TestApp) -> Vec<Value> {
    get(app, "/api/events?source=hookgate").await["items"].as_array().unwrap().clone()
}

fn json_of(r: &crate::support::receiver::Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// Whether every stored event is finished (no delivery pending, failed or in flight).
async fn settled(app: &TestApp) -> bool {
    get(app, "/api/events?limit=100").await["items"].as_array().unwrap().iter().all(|e| e["status"] != "pending")
}

/// A delivery that dies raises `delivery.dead`: an event of source `hookgate`, delivered to the
/// alert destination like any event, with type, at, destination, source, event_id, delivery_id,
/// attempts and last_error.
#[tokio::test]
async fn a_dead_delivery_is_alerted_with_the_contract_fields() {
    let crm = TestReceiver::start(500).await;
    let oncall = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .fast_retries()
        .delivery("max_attempts", 2)
        .http("crm", &crm.url())
        .http("oncall", &oncall.url())
        .hmac_source("s", &["crm"])
        .alerts(vec!["oncall".into()]);
    let app = TestApp::spawn_config(&config).await;
    let (status, json) = app.post_signed("s", br#"{"id":"evt_1"}"#).await;
    assert_eq!(status, 200);
    let event_id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), async || oncall.count() == 1).await, "the alert is delivered");
    let received = &oncall.received()[0];
    let alert = json_of(received);
    let event = get(&app, &format!("/api/events/{event_id}")).await;
    let delivery = &event["deliveries"][0];
    assert_eq!(delivery["status"], "dead");
    assert_eq!(alert["type"], "delivery.dead");
    assert_eq!(alert["destination"], "crm");
    assert_eq!(alert["source"], "s");
    assert_eq!(alert["event_id"], event_id.as_str());
    assert_eq!(alert["delivery_id"], delivery["id"]);
    assert_eq!(alert["attempts"], 2);
    assert!(alert["last_error"].as_str().unwrap().starts_with("HTTP 500"), "{alert}");
    let at = alert["at"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(at).is_ok(), "at is RFC 3339: {at}");
    assert_eq!(alert.as_object().unwrap().len(), 8, "{alert}");
    // An ordinary event of the built-in source: stored, listed, delivered with its id.
    assert_eq!(received.header("x-hookgate-source"), "hookgate");
    assert_eq!(received.header("content-type"), "application/json");
    let stored = alert_events(&app).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(received.header("webhook-id"), stored[0]["id"].as_str().unwrap());
    assert!(eventually(Duration::from_secs(5), async || alert_events(&app).await[0]["status"] == "succeeded").await);
}

/// `failures = 2`: the circuit opens (`destination.circuit_opened`, with the error that opened it),
/// a failed trial reopens it (no second alert), a successful one closes it
/// (`destination.circuit_closed`). Real time, short cooldowns; nothing asserts on durations.
#[tokio::test]
async fn a_circuit_opening_and_closing_is_alerted_once_each() {
    let crm = TestReceiver::scripted(200, &[503, 503, 503]).await;
    let oncall = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .delivery("initial_backoff", "10ms")
        .delivery("max_backoff", "400ms")
        .delivery("max_attempts", 10)
        .http("crm", &crm.url())
        .set("concurrency", 1)
        .set(
            "circuit_breaker",
            toml::Value::Table(toml::toml! { failures = 2
            cooldown = "200ms" }),
        )
        .http("oncall", &oncall.url())
        .hmac_source("s", &["crm"])
        .alerts(vec!["oncall".into()]);
    let app = TestApp::spawn_config(&config).await;
    for i in 0..2 {
        assert_eq!(app.post_signed("s", format!(r#"{{"n":{i}}}"#).as_bytes()).await.0, 200);
    }
    let closed = async || oncall.received().iter().any(|r| json_of(r)["type"] == "destination.circuit_closed");
    assert!(eventually(Duration::from_secs(15), closed).await, "closed: {:?}", oncall.count());
    assert!(eventually(Duration::from_secs(10), async || settled(&app).await).await);
    let types: Vec<Value> = oncall.received().iter().map(|r| json_of(r)["type"].clone()).collect();
    assert_eq!(types, ["destination.circuit_opened", "destination.circuit_closed"], "the reopening raised nothing");
    assert!(crm.count() >= 4, "two failures, a failed trial, then a successful one: {}", crm.count());
    let opened = json_of(&oncall.received()[0]);
    assert_eq!((opened["destination"].as_str(), opened.as_object().unwrap().len()), (Some("crm"), 4), "{opened}");
    assert!(opened["last_error"].as_str().unwrap().starts_with("HTTP 503"), "{opened}");
    let closed = json_of(&oncall.received()[1]);
    assert_eq!(closed.as_object().unwrap().len(), 3, "type, at, destination: {closed}");
}

/// No loops: a destination that receives alerts raises none about itself. Here it fails
/// everything: its own deliveries of a source's events die, and so does the alert's delivery to
/// it, and neither raises an alert; only the other destination's death does.
#[tokio::test]
async fn a_destination_that_receives_alerts_raises_none_about_itself() {
    let crm = TestReceiver::start(500).await;
    let oncall = TestReceiver::start(500).await;
    let config = TestConfig::new()
        .delivery("max_attempts", 1)
        .http("crm", &crm.url())
        .http("oncall", &oncall.url())
        .set("circuit_breaker", false)
        .hmac_source("s", &["crm", "oncall"])
        .alerts(vec!["oncall".into()]);
    let app = TestApp::spawn_config(&config).await;
    assert_eq!(app.post_signed("s", br#"{"id":"evt_loop"}"#).await.0, 200);
    // oncall gets the source's event and the alert about crm: both fail once and die.
    assert!(eventually(Duration::from_secs(10), async || oncall.count() == 2).await);
    assert!(eventually(Duration::from_secs(10), async || settled(&app).await).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = alert_events(&app).await;
    assert_eq!(alerts.len(), 1, "only crm's death: {alerts:?}");
    let alert: Value = serde_json::from_str(
        get(&app, &format!("/api/events/{}", alerts[0]["id"].as_str().unwrap())).await["body"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(alert["destination"], "crm");
    assert_eq!(alerts[0]["status"], "dead", "the alert's own delivery died, quietly");
    assert_eq!(oncall.count(), 2);
}

/// Alert routes take filters and transforms like any `deliver_to`: chat gets only deaths, as a
/// Slack-style text; audit gets every alert raised as it is; `on` leaves out the opening.
#[tokio::test]
async fn alert_routes_filter_and_transform() {
    let crm = TestReceiver::scripted(200, &[500]).await;
    let chat = TestReceiver::start(200).await;
    let audit = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .delivery("max_attempts", 1)
        .http("crm", &crm.url())
        .set(
            "circuit_breaker",
            toml::Value::Table(toml::toml! { failures = 1
            cooldown = "100ms" }),
        )
        .http("chat", &chat.url())
        .http("audit", &audit.url())
        .hmac_source("s", &["crm"])
        .alerts(vec![
            rule(
                "chat",
                Some(r#".body.type == "delivery.dead""#),
                Some(r#"{text: "\(.body.destination) died after \(.body.attempts) attempt(s): \(.body.last_error)"}"#),
            ),
            "audit".into(),
        ])
        .alerts_on(&["delivery.dead", "destination.circuit_closed"]);
    let app = TestApp::spawn_config(&config).await;
    // One failure: the delivery dies (max_attempts = 1) and the circuit opens (failures = 1).
    assert_eq!(app.post_signed("s", br#"{"id":"evt_chat"}"#).await.0, 200);
    assert!(eventually(Duration::from_secs(10), async || audit.count() == 1).await, "audit: {}", audit.count());
    // The next event is the trial after the cooldown: it succeeds and the circuit closes.
    assert_eq!(app.post_signed("s", br#"{"id":"evt_ok"}"#).await.0, 200);
    assert!(eventually(Duration::from_secs(10), async || audit.count() == 2).await, "audit: {}", audit.count());
    let types: Vec<String> =
        audit.received().iter().map(|r| json_of(r)["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["delivery.dead", "destination.circuit_closed"], "no circuit_opened: not in `on`");
    assert!(eventually(Duration::from_secs(5), async || chat.count() == 1).await);
    let text = json_of(&chat.received()[0]);
    assert_eq!(
        text,
        serde_json::json!({"text": "crm died after 1 attempt(s): HTTP 500 Internal Server Error: receiver says hi"})
    );
    assert_eq!(chat.received()[0].header("content-type"), "application/json");
    // The closing's delivery to chat was filtered, with the reason.
    let alerts = alert_events(&app).await;
    let mut reasons = Vec::new();
    for e in &alerts {
        let detail = get(&app, &format!("/api/events/{}", e["id"].as_str().unwrap())).await;
        for d in detail["deliveries"].as_array().unwrap() {
            if d["status"] == "filtered" {
                reasons.push(d["last_error"].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(reasons.len(), 1, "{alerts:?}");
    assert!(reasons[0].starts_with("no match: .body.type == \"delivery.dead\""), "{reasons:?}");
    assert_eq!(chat.count(), 1);
}

/// `hookgate route hookgate` dry-runs the alert routes on a sample `delivery.dead` alert (or the
/// body given), as the dispatcher would route it.
#[test]
fn route_dry_runs_the_alert_routes() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new()
        .http("crm", "http://127.0.0.1:9/")
        .http("chat", "http://127.0.0.1:9/")
        .http("audit", "http://127.0.0.1:9/")
        .hmac_source("s", &["crm"])
        .alerts(vec![
            rule("chat", Some(r#".body.type == "delivery.dead""#), Some(r#"{text: "\(.body.destination) died"}"#)),
            "audit".into(),
        ])
        .write(dir.path());
    let run = |data: Option<&str>| {
        let mut cmd = std::process::Command::new(crate::support::binary());
        cmd.args(["route", "hookgate", "--json", "--config"]).arg(&config);
        if let Some(d) = data {
            cmd.args(["--data", d]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let got = run(None);
    assert_eq!(got["destinations"][0]["matched"], true, "{got}");
    assert_eq!(got["destinations"][0]["body"], serde_json::json!({"text": "crm died"}));
    assert_eq!(got["destinations"][1]["destination"], "audit");
    let closed = run(Some(r#"{"type":"destination.circuit_closed","destination":"crm"}"#));
    assert_eq!(
        (closed["destinations"][0]["matched"].as_bool(), closed["destinations"][1]["matched"].as_bool()),
        (Some(false), Some(true))
    );
}

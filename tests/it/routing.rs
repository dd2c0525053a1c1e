//! Routing rules (CONTRACT §7): jq filters at ingest, transforms at each attempt, the `filtered`
//! status everywhere statuses appear, `hookgate route`, and the limits that stop a runaway
//! expression. Real gateways on port 0, real receivers, real processes for the CLI and `exec`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use toml::Value as Toml;

use crate::support::app::SECRET;
use crate::support::{TestApp, TestConfig, TestReceiver, binary, eventually, hmac_hex, metric, rule};

const PUSH_ON_MAIN: &str = r#".headers["x-github-event"] == "push" and .body.ref == "refs/heads/main""#;
const PR_OPENED: &str = r#".headers["x-github-event"] == "pull_request" and .body.action == "opened""#;
const PR_MESSAGE: &str = r#"{text: "PR #\(.body.number) opened: \(.body.pull_request.title)"}"#;

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/payloads").join(name)).unwrap()
}

/// POSTs `body` to `/hook/SOURCE` signed as GitHub signs, with `headers`; returns the event id.
async fn post_github(app: &TestApp, source: &str, event: &str, body: &[u8]) -> String {
    let sig = format!("sha256={}", hmac_hex(SECRET, body));
    let delivery = uuid::Uuid::new_v4().to_string();
    let headers = [
        ("x-hub-signature-256", sig.as_str()),
        ("x-github-event", event),
        ("x-github-delivery", delivery.as_str()),
        ("content-type", "application/json"),
    ];
    let resp = app.post(&format!("/hook/{source}"), body, &headers).await;
    assert_eq!(resp.status(), 200);
    let json: Value = resp.json().await.unwrap();
    json["event_id"].as_str().unwrap().to_string()
}

async fn api(app: &TestApp, path: &str) -> Value {
    app.client.get(app.admin_url(path)).send().await.unwrap().json().await.unwrap()
}

/// The event's deliveries as (destination, status, last_error).
async fn deliveries(app: &TestApp, id: &str) -> Vec<(String, String, String)> {
    let ev = api(app, &format!("/api/events/{id}")).await;
    ev["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["destination"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
                d["last_error"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn event_status(app: &TestApp, id: &str) -> String {
    api(app, &format!("/api/events/{id}")).await["status"].as_str().unwrap().to_string()
}

/// The everyday GitHub case: every event to audit, pushes to main to CI, opened pull requests to
/// chat as a short message. Names and tables mixed in one `deliver_to`.
fn github_routes(audit: &str, ci: &str, chat: &str) -> TestConfig {
    TestConfig::new().fast_retries().http("audit", audit).http("ci", ci).http("chat", chat).github_source(
        "gh",
        vec![
            Toml::from("audit"),
            rule("ci", Some(PUSH_ON_MAIN), None),
            rule("chat", Some(PR_OPENED), Some(PR_MESSAGE)),
        ],
    )
}

#[tokio::test]
async fn github_events_go_where_their_filters_send_them_and_the_others_say_why_not() {
    let (audit, ci, chat) =
        (TestReceiver::start(200).await, TestReceiver::start(200).await, TestReceiver::start(200).await);
    let app = TestApp::spawn_config(&github_routes(&audit.url(), &ci.url(), &chat.url())).await;

    let push = post_github(&app, "gh", "push", &payload("github-push.json")).await;
    let pr = post_github(&app, "gh", "pull_request", &payload("github-pull_request-opened.json")).await;
    assert!(
        eventually(Duration::from_secs(10), async || audit.count() == 2 && ci.count() == 1 && chat.count() == 1).await
    );

    // CI got the push as it came; chat got the transformed message as JSON.
    assert_eq!(&ci.received()[0].body[..], &payload("github-push.json")[..]);
    let msg = &chat.received()[0];
    assert_eq!(msg.header("content-type"), "application/json");
    let text: Value = serde_json::from_slice(&msg.body).unwrap();
    assert_eq!(text, serde_json::json!({"text": "PR #1 opened: Update the README with new information"}));
    assert_eq!(msg.header("webhook-id"), pr);

    // "Why didn't chat get the push?" is answered by the API.
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &push).await == "succeeded").await);
    let d = deliveries(&app, &push).await;
    assert_eq!((d[0].1.as_str(), d[1].1.as_str(), d[2].1.as_str()), ("succeeded", "succeeded", "filtered"));
    assert!(
        d[2].2.starts_with("no match: ") && d[2].2.contains("pull_request") && d[2].2.ends_with("gave false"),
        "{d:?}"
    );
    let d = deliveries(&app, &pr).await;
    assert_eq!(d[1].1, "filtered");

    // Filtered deliveries are listed, counted and never attempted.
    let listed = api(&app, "/api/deliveries?status=filtered").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let metrics = app.client.get(app.admin_url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, r#"hookgate_deliveries_filtered_total{source="gh",destination="chat"}"#), Some(1.0));
    assert_eq!(metric(&metrics, r#"hookgate_deliveries_filtered_total{source="gh",destination="ci"}"#), Some(1.0));
    assert_eq!(metric(&metrics, r#"hookgate_deliveries{status="filtered"}"#), Some(2.0));
    app.stop().await;
}

#[tokio::test]
async fn filters_read_the_query_the_path_and_form_fields() {
    let (prod, sms) = (TestReceiver::start(200).await, TestReceiver::start(200).await);
    let config = TestConfig::new().http("prod", &prod.url()).http("sms", &sms.url()).routed_source(
        "s",
        toml::toml! { scheme = "hmac-sha256" header = "X-Signature" secret_file = "secret.txt" },
        vec![
            rule("prod", Some(r#".query.env == "prod" and .path == "/hook/s""#), None),
            rule("sms", Some(r#".body.From | startswith("+44")"#), Some(r#""\(.body.From): \(.body.Body)""#)),
        ],
    );
    let app = TestApp::spawn_config(&config).await;
    let post = async |query: &str, content_type: &str, body: &[u8]| {
        let sig = hmac_hex(SECRET, body);
        let resp = app
            .post(&format!("/hook/s{query}"), body, &[("x-signature", sig.as_str()), ("content-type", content_type)])
            .await;
        assert_eq!(resp.status(), 200);
        resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string()
    };
    let form = "application/x-www-form-urlencoded";
    let a = post("?env=staging&env=prod", form, b"From=%2B447700900123&Body=Hello+there").await;
    let b = post("?env=dev", form, b"From=%2B15005550006&Body=Hi").await;
    assert!(eventually(Duration::from_secs(10), async || prod.count() == 1 && sms.count() == 1).await);
    // The last value of a repeated query name counts; a form body is an object of its fields.
    assert_eq!(sms.received()[0].header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(&sms.received()[0].body[..], b"+447700900123: Hello there");
    assert_eq!(deliveries(&app, &b).await.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(), ["filtered", "filtered"]);
    assert_eq!(event_status(&app, &b).await, "filtered");
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &a).await == "succeeded").await);
    let filtered = api(&app, "/api/events?status=filtered").await;
    let ids: Vec<&str> = filtered["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [b.as_str()]);
    app.stop().await;
}

#[tokio::test]
async fn a_raising_filter_is_no_match_with_its_error_and_a_filtered_delivery_can_be_replayed() {
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new().http("rx", &rx.url()).github_source(
        "gh",
        // `.body.ref` is a string here, and indexing a string raises.
        vec![rule("rx", Some(".body.ref.name == \"main\""), None)],
    );
    let app = TestApp::spawn_config(&config).await;
    let id = post_github(&app, "gh", "push", &payload("github-push.json")).await;
    let d = deliveries(&app, &id).await;
    assert_eq!(d[0].1, "filtered");
    assert!(d[0].2.starts_with("filter error: "), "{d:?}");
    assert_eq!(event_status(&app, &id).await, "filtered");

    // Replaying the event without a destination leaves filtered deliveries alone…
    let resp = app.client.post(app.admin_url(&format!("/api/events/{id}/replay"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 0);
    // …and naming it delivers it on purpose.
    let resp = app.client.post(app.admin_url(&format!("/api/events/{id}/replay?destination=rx"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await);
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &id).await == "succeeded").await);
    app.stop().await;
}

#[tokio::test]
async fn a_transform_error_dead_letters_at_once_and_a_corrected_transform_applies_on_replay_after_a_restart() {
    let rx = TestReceiver::start(200).await;
    let broken = r#"{title: .body.pull_request.title, size: (.body.pull_request.additions | error("no size"))}"#;
    let config = |transform: &str| {
        TestConfig::new()
            .delivery("max_attempts", 5)
            .http("rx", &rx.url())
            .github_source("gh", vec![rule("rx", None, Some(transform))])
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    config(broken).write(dir.path());
    let app = TestApp::start_in(dir.clone(), Vec::new()).await;
    let id = post_github(&app, "gh", "pull_request", &payload("github-pull_request-opened.json")).await;
    assert!(eventually(Duration::from_secs(10), async || event_status(&app, &id).await == "dead").await);
    let ev = api(&app, &format!("/api/events/{id}")).await;
    let d = &ev["deliveries"][0];
    assert_eq!(d["attempts"], 1, "dead at once, not retried: {d}");
    assert_eq!(d["last_error"].as_str().unwrap(), "transform error: no size");
    assert_eq!(rx.count(), 0);
    let dir = app.stop().await;

    // The operator fixes the transform and restarts; the replay runs the new one on the stored event.
    config("{title: .body.pull_request.title, size: .body.pull_request.additions}").write(dir.path());
    let app = TestApp::start_in(dir, Vec::new()).await;
    let resp = app.client.post(app.admin_url(&format!("/api/events/{id}/replay"))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await);
    let got: Value = serde_json::from_slice(&rx.received()[0].body).unwrap();
    assert_eq!(got, serde_json::json!({"title": "Update the README with new information", "size": 1}));
    app.stop().await;
}

#[tokio::test]
async fn exec_destinations_read_the_transformed_body_on_stdin() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let config = TestConfig::new()
        .exec("log", &["sh", "-c", "cat > out.txt; printf %s \"$HOOKGATE_CONTENT_TYPE\" > type.txt"])
        .github_source("gh", vec![rule("log", None, Some(r#""\(.headers["x-github-event"]) to \(.body.ref)""#))]);
    config.write(dir.path());
    let app = TestApp::start_in(dir.clone(), Vec::new()).await;
    let id = post_github(&app, "gh", "push", &payload("github-push.json")).await;
    assert!(eventually(Duration::from_secs(10), async || event_status(&app, &id).await == "succeeded").await);
    assert_eq!(std::fs::read_to_string(dir.path().join("out.txt")).unwrap(), "push to refs/heads/main");
    assert_eq!(std::fs::read_to_string(dir.path().join("type.txt")).unwrap(), "text/plain; charset=utf-8");
    app.stop().await;
}

#[tokio::test]
async fn runaway_expressions_are_stopped_and_counted_as_errors() {
    let (a, b) = (TestReceiver::start(200).await, TestReceiver::start(200).await);
    let config = TestConfig::new().http("a", &a.url()).http("b", &b.url()).github_source(
        "gh",
        vec![rule("a", Some("[range(1e9)] | length > 0"), None), rule("b", None, Some("[repeat(.)] | length"))],
    );
    let app = TestApp::spawn_config(&config).await;
    let id = post_github(&app, "gh", "push", &payload("github-push.json")).await;
    assert!(eventually(Duration::from_secs(20), async || event_status(&app, &id).await == "dead").await);
    let d = deliveries(&app, &id).await;
    assert_eq!(d[0].1, "filtered");
    assert!(d[0].2.starts_with("filter error: stopped: "), "{d:?}");
    assert!(d[1].2.starts_with("transform error: stopped: "), "{d:?}");
    assert_eq!(a.count() + b.count(), 0);
    // The gateway still answers at once.
    let again = post_github(&app, "gh", "ping", b"{\"zen\":\"Keep it logically awesome.\"}").await;
    assert_ne!(again, id);
    app.stop().await;
}

fn write_routed(dir: &Path) -> std::path::PathBuf {
    github_routes("http://127.0.0.1:9/audit", "http://127.0.0.1:9/ci", "http://127.0.0.1:9/chat").write(dir)
}

#[test]
fn route_shows_each_destination_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_routed(dir.path());
    let push = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/payloads/github-pull_request-opened.json");
    let run = |json: bool| {
        let mut cmd = Command::new(binary());
        cmd.args(["route", "gh", "--config"]).arg(&config).arg("--data").arg(format!("@{}", push.display()));
        cmd.args(["--header", "X-GitHub-Event: pull_request"]);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = got["destinations"].as_array().unwrap();
    let row = |i: usize| (items[i]["destination"].as_str().unwrap(), items[i]["matched"].as_bool().unwrap());
    assert_eq!([row(0), row(1), row(2)], [("audit", true), ("ci", false), ("chat", true)]);
    assert_eq!(items[2]["body"], serde_json::json!({"text": "PR #1 opened: Update the README with new information"}));
    assert_eq!(
        items[0]["body"].as_str().unwrap(),
        String::from_utf8(payload("github-pull_request-opened.json")).unwrap()
    );
    assert!(items.iter().all(|i| i["error"].is_null()), "{got}");

    let text = String::from_utf8(run(false).stdout).unwrap();
    assert!(
        text.contains("audit: matched") && text.contains("ci: filtered") && text.contains("chat: matched"),
        "{text}"
    );
    assert!(text.contains("no match: ") && text.contains("PR #1 opened"), "{text}");

    // A raising filter shows its error; nothing was stored (there is no database file).
    let bad = Command::new(binary())
        .args(["route", "gh", "--config"])
        .arg(&config)
        .args(["--data", "[1,2]", "--json", "--header", "X-GitHub-Event: push"])
        .output()
        .unwrap();
    let got: Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert!(got["destinations"][1]["error"].as_str().unwrap().starts_with("filter error: "), "{got}");
    assert!(!dir.path().join("hookgate.db").exists());
}

#[test]
fn check_names_the_key_of_every_bad_expression() {
    let dir = tempfile::tempdir().unwrap();
    let config = TestConfig::new().http("a", "http://127.0.0.1:9/a").http("b", "http://127.0.0.1:9/b").github_source(
        "gh",
        vec![
            rule("a", Some(".body | "), None),
            rule("b", Some("true"), Some("no_such_function(.body)")),
            Toml::Table(toml::toml! { destination = "a" filtr = "true" }),
            Toml::from(3),
        ],
    );
    let path = config.write(dir.path());
    let out = Command::new(binary()).args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "sources[0] (gh).deliver_to[0].filter: expected",
        "sources[0] (gh).deliver_to[1].transform: undefined filter \"no_such_function\"",
        "sources[0] (gh).deliver_to[2].filtr: unknown key",
        "sources[0] (gh).deliver_to[3]: expected a destination's name or a table",
    ] {
        assert!(err.contains(key), "missing {key:?} in:\n{err}");
    }
}

/// Every filter and transform of docs/ROUTING.md's cookbook compiles and does what its title says
/// on the payloads in examples/payloads/.
#[test]
fn the_cookbook_in_the_docs_works() {
    use hookgate::routing::document::Parts;
    use hookgate::routing::engine::{Limits, Program};
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ROUTING.md")).unwrap();
    let cookbook = &doc[doc.find("## Cookbook").unwrap()..];
    let exprs: Vec<(String, String)> = cookbook
        .split(['`'])
        .filter_map(|s| {
            let (kind, rest) = s.split_once(" = '")?;
            Some((kind.trim().to_string(), rest.strip_suffix('\'')?.to_string()))
        })
        .collect();
    assert!(exprs.len() >= 13, "{exprs:?}");
    let parts = |file: &str, headers: &[(&str, &str)], query: &str, content_type: &str| Parts {
        source: "s".into(),
        event_id: "e".into(),
        path_and_query: format!("/hook/s{query}"),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        content_type: Some(content_type.into()),
        body: if file.ends_with(".json") { payload(file).into() } else { file.as_bytes().to_vec().into() },
    };
    let pool = hookgate::routing::pool::Pool::new(1).unwrap();
    let run = |code: &str, p: Parts| {
        let program = Program::compile(code).unwrap_or_else(|e| panic!("{code}: {e}"));
        pool.run_blocking(move || program.first(p.document(), Limits::default()).map(|v| v.map(|v| v.to_string())))
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let json = "application/json";
    let push = || parts("github-push.json", &[("x-github-event", "push")], "", json);
    let pr = || parts("github-pull_request-opened.json", &[("x-github-event", "pull_request")], "", json);
    let pay = || parts("stripe-payment_intent.succeeded.json", &[], "", json);
    let refund = || parts("stripe-charge.refunded.json", &[], "", json);
    let order = || parts("shopify-orders-create.json", &[("x-shopify-topic", "orders/create")], "", json);
    let t = Some("true".to_string());
    let f = Some("false".to_string());
    let expect: Vec<(Parts, Option<String>)> = vec![
        (push(), t.clone()),
        (pr(), t.clone()),
        (push(), f.clone()),
        (parts("github-push.json", &[("x-github-event", "release")], "", json), f.clone()),
        (push(), Some(r#"{"text":"*baxterthehacker/public-repo* released <null|null>"}"#.into())),
        (refund(), f.clone()),
        (pay(), t.clone()),
        (pay(), f.clone()),
        (order(), t.clone()),
        (order(), None),
        (refund(), None),
        (pay(), Some(r#""s: payment_intent.succeeded e""#.into())),
        (parts("github-push.json", &[], "?env=prod", json), t.clone()),
        (parts("From=%2B447700900123&Body=hi", &[], "", "application/x-www-form-urlencoded"), t.clone()),
    ];
    assert_eq!(exprs.len(), expect.len(), "{exprs:?}");
    for ((kind, code), (p, want)) in exprs.iter().zip(expect) {
        let got = run(code, p);
        match want {
            Some(w) => assert_eq!(got.as_deref(), Some(w.as_str()), "{kind} {code}"),
            None => assert!(got.is_some(), "{kind} {code}"),
        }
    }
}

#[tokio::test]
async fn a_rust_handler_sees_the_transformed_body() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let handler = hookgate::Handler::new(move |ev: hookgate::Event| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push((ev.content_type.clone(), ev.body.clone()));
            Ok(())
        }
    });
    let config = TestConfig::new()
        .rust("billing")
        .github_source("gh", vec![rule("billing", None, Some("{repo: .body.repository.full_name}"))]);
    let app = TestApp::spawn_config_with(&config, vec![("billing", handler)]).await;
    let id = post_github(&app, "gh", "push", &payload("github-push.json")).await;
    assert!(eventually(Duration::from_secs(10), async || event_status(&app, &id).await == "succeeded").await);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_deref(), Some("application/json"));
    assert_eq!(&got[0].1[..], br#"{"repo":"baxterthehacker/public-repo"}"#);
    app.stop().await;
}

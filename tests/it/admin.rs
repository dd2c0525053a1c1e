//! The admin listener from outside (CONTRACT §5, §6): auth, the API's JSON, replays, metrics,
//! rate limits, retention, the UI and the OpenAPI document.

use std::time::Duration;

use hookgate::{App, Config, Role};
use serde_json::Value;

use crate::support::app::{ADMIN_TOKEN, Extra, hmac_source};
use crate::support::{TestApp, TestReceiver, eventually, hmac_hex, metric};

const FAST: &str = "[delivery]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"\n";
const TOKEN: Extra<'static> = Extra { server: "", storage: "", admin: Extra::ADMIN_TOKEN };

fn http_dest(name: &str, url: &str, extra: &str) -> String {
    format!("[[destinations]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\ntimeout = \"2s\"\n{extra}\n")
}

/// An app whose admin API needs [`ADMIN_TOKEN`].
async fn spawn(body: &str) -> TestApp {
    TestApp::spawn_extra(&TOKEN, body, Vec::new()).await
}

/// GET on the admin listener with the right token; (status, JSON).
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.get(app.admin_url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.post(app.admin_url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn event_status(app: &TestApp, id: &str) -> String {
    get(app, &format!("/api/events/{id}")).await.1["status"].as_str().unwrap_or("").to_string()
}

async fn metrics(app: &TestApp) -> String {
    let resp = app.client.get(app.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    resp.text().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn api_needs_the_token_but_health_metrics_and_ui_do_not() {
    let rx = TestReceiver::start(200).await;
    let app = spawn(&format!("{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let url = app.admin_url("/api/events");
    let none = app.client.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    assert_eq!(none.json::<Value>().await.unwrap()["error"], "unauthorized");
    for wrong in ["nope", "test-admin-toke", "test-admin-tokenx", ""] {
        let resp = app.client.get(&url).bearer_auth(wrong).send().await.unwrap();
        assert_eq!(resp.status(), 401, "token {wrong:?}");
    }
    let basic = app.client.get(&url).basic_auth("admin", Some(ADMIN_TOKEN)).send().await.unwrap();
    assert_eq!(basic.status(), 401);
    let ok = app.client.get(&url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // Every endpoint is behind the token, replays above all.
    for (method, path) in [
        ("POST", "/api/deliveries/replay?status=dead"),
        ("POST", "/api/events/x/replay"),
        ("GET", "/api/deliveries"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/nothing-here"),
    ] {
        let req = app.client.request(method.parse().unwrap(), app.admin_url(path));
        assert_eq!(req.send().await.unwrap().status(), 401, "{method} {path}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        let resp = app.client.get(app.admin_url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let (status, body) = get(&app, "/api/nothing-here").await;
    assert_eq!((status, body["error"].is_string()), (404, true));
}

#[tokio::test]
async fn without_a_token_the_admin_api_starts_only_on_loopback() {
    let body = "[[destinations]]\nname = \"rx\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/\"\n\n\
                [[sources]]\nname = \"s\"\npath = \"/s\"\nverify = { scheme = \"none\", insecure = true }\ndeliver_to = [\"rx\"]\n";
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\nurl = \"sqlite://h.db\"\n[admin]\nlisten = \"0.0.0.0:0\"\n{body}"
    );
    // Refused when the config is read (so `hookgate check` says it too)...
    let err = Config::from_toml(&text, &dir.path().join("h.toml"), dir.path()).expect_err("refused").to_string();
    assert!(err.contains("admin.listen") && err.contains("HOOKGATE_ADMIN_TOKEN"), "{err}");
    // ...and by App::build, for a config changed after it was read.
    let mut config =
        Config::from_toml(&text.replace("0.0.0.0:0", "127.0.0.1:0"), &dir.path().join("h.toml"), dir.path()).unwrap();
    assert!(config.admin.token.is_none(), "the test environment must not set HOOKGATE_ADMIN_TOKEN");
    config.admin.listen = "0.0.0.0:0".parse().unwrap();
    let err = App::build(config, Role::All, Default::default(), hookgate::clock::system())
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("admin.listen") && err.contains("HOOKGATE_ADMIN_TOKEN"), "{err}");

    // On loopback it is open (with a warning in the log), and refuses other sites' browsers.
    let app = TestApp::spawn(body).await;
    let url = app.admin_url("/api/events");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    let rebinding = app.client.get(&url).header("host", "evil.example:8081").send().await.unwrap();
    assert_eq!(rebinding.status(), 401, "a DNS-rebound page must not read the API");
    for host in ["[::1]evil.example", "[::1]evil.example:8081", "127.0.0.1.evil.example", "localhost.evil.example:80"] {
        let resp = app.client.get(&url).header("host", host).send().await.unwrap();
        assert_eq!(resp.status(), 401, "Host {host:?} is not a loopback name");
    }
    let cross_site = app
        .client
        .post(app.admin_url("/api/deliveries/replay?status=dead"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 401, "another site's form must not replay");
}

#[tokio::test]
async fn events_are_listed_newest_first_filtered_and_paged() {
    let rx = TestReceiver::start(200).await;
    let app = spawn(&format!(
        "{FAST}{}{}{}",
        http_dest("rx", &rx.url(), ""),
        hmac_source("a", &["rx"]),
        hmac_source("b", &["rx"])
    ))
    .await;
    let mut posted = Vec::new();
    for (i, source) in ["a", "b", "a", "a", "b"].iter().enumerate() {
        let (status, json) = app.post_signed(source, format!("{{\"id\":\"e{i}\"}}").as_bytes()).await;
        assert_eq!(status, 200);
        posted.push(json["event_id"].as_str().unwrap().to_string());
    }
    let newest_first: Vec<String> = posted.iter().rev().cloned().collect();

    let (status, page) = get(&app, "/api/events").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), newest_first);
    assert!(page["next_cursor"].is_null());
    let first = &page["items"][0];
    assert_eq!(first["source"], "b");
    assert_eq!(first["dedupe_key"], "sha256:".to_string() + &sha256_hex(b"{\"id\":\"e4\"}"));
    assert_eq!(first["content_type"], "application/json");
    humantime::parse_rfc3339(first["received_at"].as_str().unwrap()).expect("RFC 3339");

    // Pages of two, stable: the cursor walks the same list.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/events?limit=2&cursor={c}"),
            None => "/api/events?limit=2".to_string(),
        };
        let (_, page) = get(&app, &path).await;
        walked.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(walked.len() <= 5, "paging must end");
    }
    assert_eq!(walked, newest_first);

    let (_, only_a) = get(&app, "/api/events?source=a").await;
    assert_eq!(ids(&only_a), vec![posted[3].clone(), posted[2].clone(), posted[0].clone()]);
    assert!(
        eventually(Duration::from_secs(5), async || {
            get(&app, "/api/events?status=succeeded").await.1["items"].as_array().unwrap().len() == 5
        })
        .await
    );
    let (_, dead) = get(&app, "/api/events?status=dead").await;
    assert!(ids(&dead).is_empty());
    let (_, recent) = get(&app, "/api/events?since=1h").await;
    assert_eq!(ids(&recent).len(), 5);
    let (_, old) = get(&app, "/api/events?until=2020-01-01T00:00:00Z").await;
    assert!(ids(&old).is_empty());

    // A time with an offset is read as that instant; a cursor past every position reads from the newest.
    let (_, offset) = get(&app, "/api/events?until=2100-01-01T02:00:00%2B02:00").await;
    assert_eq!(ids(&offset).len(), 5);
    let (_, far) = get(&app, "/api/events?cursor=9999999999999999999").await;
    assert_eq!(ids(&far), newest_first);

    // Every value in the form docs/openapi.json gives it; empty or repeated is not "absent".
    for bad in [
        "status=lost",
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=garbage",
        "cursor=-1",
        "since=yesterday",
        "since=2026-01-31T12:00:00",
        "stauts=dead",
        "status=",
        "source=a%20b",
        "status=dead&status=pending",
    ] {
        let (status, body) = get(&app, &format!("/api/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    for bad in ["status=lost", "status=", "destination=", "source=%00"] {
        let (status, _) = get(&app, &format!("/api/deliveries?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
    // An empty destination must not replay every delivery of the event.
    let (status, _) = post(&app, &format!("/api/events/{}/replay?destination=", posted[0])).await;
    assert_eq!(status, 400);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test]
async fn event_detail_shows_every_attempt_and_never_a_secret_header() {
    let rx = TestReceiver::scripted(200, &[500]).await;
    let app = spawn(&format!("{FAST}{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let body = br#"{"id":"evt_1","amount":42}"#;
    let sig = hmac_hex(crate::support::app::SECRET, body);
    let resp = app
        .post(
            "/hook/s",
            body,
            &[
                ("x-signature", &sig),
                ("authorization", "Bearer sk_live_topsecret"),
                ("cookie", "session=cookiesecret"),
                ("content-type", "application/json"),
                ("x-custom", "visible"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string();
    let done = eventually(Duration::from_secs(5), async || event_status(&app, &id).await == "succeeded").await;
    let (status, ev) = get(&app, &format!("/api/events/{id}")).await;
    assert!(done, "{ev:#}");
    assert_eq!(status, 200);
    assert_eq!(ev["id"], id.as_str());
    assert_eq!(ev["source"], "s");
    assert_eq!(ev["status"], "succeeded");
    assert_eq!(ev["body"], std::str::from_utf8(body).unwrap());
    assert!(ev.get("body_encoding").is_none());
    assert_eq!(ev["headers"]["x-custom"], "visible");
    assert_eq!(ev["headers"]["x-signature"], "[redacted]");
    assert_eq!(ev["headers"]["authorization"], "[redacted]");
    assert_eq!(ev["headers"]["cookie"], "[redacted]");
    let d = &ev["deliveries"][0];
    assert_eq!(
        (d["destination"].as_str(), d["status"].as_str(), d["attempts"].as_u64()),
        (Some("rx"), Some("succeeded"), Some(2))
    );
    assert!(d["id"].is_number());
    assert!(d["next_attempt_at"].is_null());
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["outcome"], "failure");
    assert_eq!(log[0]["status_code"], 500);
    assert!(log[0]["error"].as_str().unwrap().contains("receiver says hi"), "the response excerpt is shown");
    assert!(log[0]["duration_ms"].is_number());
    assert!(log[0]["exit_code"].is_null() && log[0].get("exit_code").is_some(), "both keys, always");
    assert_eq!((log[1]["outcome"].as_str(), log[1]["status_code"].as_u64()), (Some("success"), Some(200)));
    for a in log {
        humantime::parse_rfc3339(a["at"].as_str().unwrap()).expect("RFC 3339");
    }

    // The secret values appear in no admin output at all.
    let mut everything = ev.to_string();
    everything += &get(&app, "/api/events").await.1.to_string();
    everything += &get(&app, "/api/deliveries").await.1.to_string();
    everything += &metrics(&app).await;
    for secret in ["sk_live_topsecret", "cookiesecret", sig.as_str()] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }

    let (status, missing) = get(&app, "/api/events/no-such-event").await;
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("no-such-event"));
}

#[tokio::test]
async fn a_signature_header_of_any_name_is_redacted() {
    let rx = TestReceiver::start(200).await;
    let source = hmac_source("s", &["rx"]).replace("X-Signature", "X-Hook-Mac");
    let app = spawn(&format!("{FAST}{}{source}", http_dest("rx", &rx.url(), ""))).await;
    let body = br#"{"id":"evt_mac"}"#;
    let sig = hmac_hex(crate::support::app::SECRET, body);
    let resp = app.post("/hook/s", body, &[("x-hook-mac", &sig)]).await;
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string();
    let (_, ev) = get(&app, &format!("/api/events/{id}")).await;
    assert_eq!(ev["headers"]["x-hook-mac"], "[redacted]", "{ev:#}");
    assert!(!ev.to_string().contains(&sig), "{ev:#}");
}

/// Credential headers are redacted by what their names contain, plus `[server] redact_headers`:
/// the ones the review found stored in clear never reach the database, the API or the log of a
/// real `hookgate serve`.
#[tokio::test]
async fn credential_headers_are_redacted_by_pattern_and_by_config() {
    let rx = TestReceiver::start(200).await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!("{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]));
    let extra = Extra { server: "redact_headers = [\"X-Internal-Ticket\"]", ..Extra::default() };
    let config = crate::support::app::write_config_with(dir.path(), &extra, &body);
    let node = crate::support::node::Node::spawn(&config, "all", &[]);
    let secrets = [
        ("X-Forwarded-Authorization", "Bearer fwd-s3cret"),
        ("X-Amzn-Remapped-Authorization", "Bearer amzn-s3cret"),
        ("X-Original-Authorization", "Basic b3JpZy1zM2NyZXQ="),
        ("Api-Key", "apikey-s3cret"),
        ("X-Api-Key", "xapikey-s3cret"),
        ("X-Auth-Key", "authkey-s3cret"),
        ("X-Access-Key", "accesskey-s3cret"),
        ("Private-Key", "privkey-s3cret"),
        ("X-Webhook-Key", "whkey-s3cret"),
        ("X-Jwt", "eyJhbGciOi.jwt-s3cret"),
        ("Credentials", "creds-s3cret"),
        ("X-Session-Id", "session-s3cret"),
        ("Cookie2", "c2-s3cret"),
        ("X-Internal-Ticket", "ticket-s3cret"),
    ];
    let payload = br#"{"id":"evt_redact"}"#;
    let mut req = reqwest::Client::new()
        .post(node.url("/hook/s"))
        .header("x-signature", hmac_hex(crate::support::app::SECRET, payload))
        .header("x-github-event", "push")
        .body(payload.to_vec());
    for (name, value) in secrets {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_string();
    let ev: Value = reqwest::get(node.admin_url(&format!("/api/events/{id}"))).await.unwrap().json().await.unwrap();
    for (name, value) in secrets {
        assert_eq!(ev["headers"][name.to_ascii_lowercase()], "[redacted]", "{name}: {ev:#}");
        assert!(!ev.to_string().contains(value), "{name} shown: {ev:#}");
        assert!(!node.log().contains(value), "{name} logged");
    }
    assert_eq!(ev["headers"]["x-github-event"], "push", "other headers are kept");
    // Nor in the database file itself.
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 1).await);
    drop(node);
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("hookgate.db") {
            stored.extend(std::fs::read(path).unwrap());
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(stored.contains("evt_redact"), "the event is in the files read");
    for (name, value) in secrets {
        assert!(!stored.contains(value), "{name} stored in clear");
    }
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_shown_as_base64() {
    let rx = TestReceiver::start(200).await;
    let app = spawn(&format!("{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let (_, json) = app.post_signed("s", &[0xff, 0xfe, 0x00, 0x41]).await;
    let (_, ev) = get(&app, &format!("/api/events/{}", json["event_id"].as_str().unwrap())).await;
    assert_eq!(ev["body_encoding"], "base64");
    assert_eq!(ev["body"], "//4AQQ==");
}

#[tokio::test]
async fn a_dead_delivery_is_replayed_once_the_destination_recovers() {
    let rx = TestReceiver::start(500).await;
    let ok = TestReceiver::start(200).await;
    let app = spawn(&format!(
        "{FAST}{}{}{}",
        http_dest("rx", &rx.url(), "max_attempts = 2"),
        http_dest("ok", &ok.url(), ""),
        hmac_source("s", &["rx", "ok"])
    ))
    .await;
    let (_, json) = app.post_signed("s", b"{\"n\":1}").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(10), async || event_status(&app, &id).await == "dead").await);

    let (status, dead) = get(&app, "/api/deliveries?status=dead").await;
    assert_eq!(status, 200);
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!((items[0]["event_id"].as_str(), items[0]["destination"].as_str()), (Some(id.as_str()), Some("rx")));
    assert_eq!(items[0]["source"], "s");
    assert!(items[0]["last_error"].as_str().unwrap().contains("500"), "{}", items[0]);
    let (_, by_dest) = get(&app, "/api/deliveries?destination=ok").await;
    assert_eq!(by_dest["items"][0]["status"], "succeeded");

    let (status, body) = post(&app, &format!("/api/events/{id}/replay?destination=nowhere")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = post(&app, "/api/events/no-such-event/replay").await;
    assert_eq!(status, 404);

    rx.set_default(200);
    let (status, body) = post(&app, &format!("/api/events/{id}/replay?destination=rx")).await;
    assert_eq!((status, body["replayed"].as_u64()), (200, Some(1)));
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &id).await == "succeeded").await);
    assert_eq!(ok.count(), 1, "only the dead delivery was replayed");
    let (_, ev) = get(&app, &format!("/api/events/{id}")).await;
    let rx_delivery = ev["deliveries"].as_array().unwrap().iter().find(|d| d["destination"] == "rx").unwrap().clone();
    let outcomes: Vec<&str> =
        rx_delivery["attempt_log"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failure", "failure", "success"], "the log keeps the attempts before the replay");

    // Replaying a whole event again re-delivers everything (an operator's explicit ask).
    let (_, body) = post(&app, &format!("/api/events/{id}/replay")).await;
    assert_eq!(body["replayed"], 2);
    assert!(eventually(Duration::from_secs(5), async || ok.count() == 2).await);
}

#[tokio::test]
async fn bulk_replay_counts_what_it_requeued() {
    let rx = TestReceiver::start(500).await;
    let app = spawn(&format!(
        "{FAST}{}{}{}",
        http_dest("rx", &rx.url(), "max_attempts = 1"),
        hmac_source("a", &["rx"]),
        hmac_source("b", &["rx"])
    ))
    .await;
    let mut all = Vec::new();
    for (i, source) in ["a", "a", "a", "b", "b"].iter().enumerate() {
        all.push(app.post_signed(source, format!("{i}").as_bytes()).await.1["event_id"].as_str().unwrap().to_string());
    }
    assert!(
        eventually(Duration::from_secs(10), async || {
            get(&app, "/api/deliveries?status=dead").await.1["items"].as_array().unwrap().len() == 5
        })
        .await
    );
    for bad in ["", "?status=succeeded", "?status=dead&limit=3"] {
        let (status, _) = post(&app, &format!("/api/deliveries/replay{bad}")).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    let (_, none) = post(&app, "/api/deliveries/replay?status=dead&destination=elsewhere").await;
    assert_eq!(none["replayed"], 0);

    rx.set_default(200);
    let (status, b) = post(&app, "/api/deliveries/replay?status=dead&source=b").await;
    assert_eq!((status, b["replayed"].as_u64()), (200, Some(2)));
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 7).await);
    let (_, rest) = post(&app, "/api/deliveries/replay?status=dead&destination=rx").await;
    assert_eq!(rest["replayed"], 3);
    assert!(
        eventually(Duration::from_secs(5), async || {
            get(&app, "/api/events?status=succeeded").await.1["items"].as_array().unwrap().len() == 5
        })
        .await
    );
    let (_, again) = post(&app, "/api/deliveries/replay?status=dead").await;
    assert_eq!(again["replayed"], 0, "nothing is dead any more");
}

#[tokio::test]
async fn metrics_move_when_traffic_flows() {
    let rx = TestReceiver::start(200).await;
    let app = spawn(&format!("{FAST}{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let before = metrics(&app).await;
    assert_eq!(metric(&before, "hookgate_events_received_total{source=\"s\"}"), Some(0.0), "{before}");
    assert_eq!(metric(&before, "hookgate_deliveries{status=\"pending\"}"), Some(0.0));

    assert_eq!(app.post_signed("s", b"{\"id\":1}").await.0, 200);
    assert_eq!(app.post_signed("s", b"{\"id\":1}").await.1["status"], "duplicate");
    assert_eq!(app.post("/hook/s", b"forged", &[("x-signature", "00")]).await.status(), 401);
    assert_eq!(app.post("/nowhere", b"x", &[]).await.status(), 404);
    assert!(eventually(Duration::from_secs(5), async || rx.count() == 1).await);

    let want = [
        ("hookgate_events_received_total{source=\"s\"}", 1.0),
        ("hookgate_events_duplicate_total{source=\"s\"}", 1.0),
        ("hookgate_requests_rejected_total{source=\"s\",reason=\"signature\"}", 1.0),
        ("hookgate_requests_rejected_total{source=\"\",reason=\"not_found\"}", 1.0),
        ("hookgate_requests_rejected_total{source=\"s\",reason=\"rate_limited\"}", 0.0),
        ("hookgate_ingest_duration_seconds_count{source=\"s\"}", 3.0),
        ("hookgate_deliveries{status=\"succeeded\"}", 1.0),
        ("hookgate_deliveries{status=\"dead\"}", 0.0),
        ("hookgate_delivery_attempts_total{destination=\"rx\",outcome=\"success\"}", 1.0),
        ("hookgate_delivery_attempts_total{destination=\"rx\",outcome=\"failure\"}", 0.0),
        ("hookgate_delivery_duration_seconds_count{destination=\"rx\"}", 1.0),
        ("hookgate_event_end_to_end_seconds_count{destination=\"rx\"}", 1.0),
    ];
    let mut text = String::new();
    // The attempt is counted just after the receiver answers: allow a moment.
    let settled = eventually(Duration::from_secs(5), async || {
        text = metrics(&app).await;
        want.iter().all(|(series, value)| metric(&text, series) == Some(*value))
    })
    .await;
    assert!(settled, "{:?}\n{text}", want.iter().map(|(s, _)| (s, metric(&text, s))).collect::<Vec<_>>());
    assert!(text.contains("# TYPE hookgate_delivery_duration_seconds histogram"));
    assert!(text.contains("hookgate_ingest_duration_seconds_bucket{source=\"s\",le=\""));
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_gets_429_with_retry_after() {
    let rx = TestReceiver::start(200).await;
    let source = hmac_source("s", &["rx"]) + "rate_limit = { per_second = 1, burst = 3 }\n";
    let app = spawn(&format!("{}{source}{}", http_dest("rx", &rx.url(), ""), hmac_source("free", &["rx"]))).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..6 {
        let body = format!("{{\"n\":{i}}}");
        let sig = hmac_hex(crate::support::app::SECRET, body.as_bytes());
        let resp = app.post("/hook/s", body.as_bytes(), &[("x-signature", &sig)]).await;
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && limited.is_none() {
            let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            limited = Some((retry_after, resp.json::<Value>().await.unwrap()));
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "the burst passes: {statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (retry_after, body) = limited.unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(body, serde_json::json!({"error": "rate limited"}));
    // Other sources have their own budget, and nothing refused was stored.
    assert_eq!(app.post_signed("free", b"{}").await.0, 200);
    let stored = get(&app, "/api/events?source=s").await.1["items"].as_array().unwrap().len();
    assert_eq!(stored, statuses.iter().filter(|s| **s == 200).count());
    let limited_count = statuses.iter().filter(|s| **s == 429).count() as f64;
    let text = metrics(&app).await;
    assert_eq!(
        metric(&text, "hookgate_requests_rejected_total{source=\"s\",reason=\"rate_limited\"}"),
        Some(limited_count)
    );
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let sig = hmac_hex(crate::support::app::SECRET, b"later");
    assert_eq!(app.post("/hook/s", b"later", &[("x-signature", &sig)]).await.status(), 200);
}

#[tokio::test]
async fn retention_purges_only_finished_events_past_their_time() {
    let ok = TestReceiver::start(200).await;
    let failing = TestReceiver::start(500).await;
    let dests = format!(
        "{}{}{}",
        http_dest("ok", &ok.url(), ""),
        http_dest("dead", &failing.url(), "max_attempts = 1"),
        http_dest("retrying", &failing.url(), "initial_backoff = \"1h\"\nmax_backoff = \"1h\""),
    );
    let sources = hmac_source("done", &["ok"]) + &hmac_source("dies", &["dead"]) + &hmac_source("waits", &["retrying"]);
    let extra = Extra { storage: "retention = \"2s\"", ..TOKEN };
    let app = TestApp::spawn_extra(&extra, &format!("{FAST}{dests}{sources}"), Vec::new()).await;
    let done = app.post_signed("done", b"1").await.1["event_id"].as_str().unwrap().to_string();
    let dies = app.post_signed("dies", b"2").await.1["event_id"].as_str().unwrap().to_string();
    let waits = app.post_signed("waits", b"3").await.1["event_id"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &done).await == "succeeded").await);
    assert!(eventually(Duration::from_secs(5), async || event_status(&app, &dies).await == "dead").await);

    // Finished (succeeded or dead) and older than 2 s: purged within a few purge rounds (1 s apart).
    let gone = async |id: &str| get(&app, &format!("/api/events/{id}")).await.0 == 404;
    assert!(eventually(Duration::from_secs(10), async || gone(&done).await && gone(&dies).await).await);
    // Still waiting for a retry: kept, however old.
    let (status, ev) = get(&app, &format!("/api/events/{waits}")).await;
    assert_eq!((status, ev["deliveries"][0]["status"].as_str()), (200, Some("failed")));
    // Young: kept.
    let fresh = app.post_signed("done", b"4").await.1["event_id"].as_str().unwrap().to_string();
    assert_eq!(get(&app, &format!("/api/events/{fresh}")).await.0, 200);
    let (_, deliveries) = get(&app, "/api/deliveries?status=dead").await;
    assert!(deliveries["items"].as_array().unwrap().is_empty(), "the purged event's deliveries went with it");
}

#[tokio::test]
async fn the_ui_and_the_openapi_document_are_served() {
    let rx = TestReceiver::start(200).await;
    let app = spawn(&format!("{}{}", http_dest("rx", &rx.url(), ""), hmac_source("s", &["rx"]))).await;
    let page = app.client.get(app.admin_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/ui.js\"") && html.contains("hookgate"), "{html}");
    let js = app.client.get(app.admin_url("/ui.js")).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let js = js.text().await.unwrap();
    for used in ["/api/events", "/replay", "sessionStorage", "/api/deliveries/replay"] {
        assert!(js.contains(used), "ui.js uses {used}");
    }

    let (status, doc) = get(&app, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/events",
        "/api/events/{id}",
        "/api/events/{id}/replay",
        "/api/deliveries",
        "/api/deliveries/replay",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi.json documents {path}");
    }
}

//! The admin web UI in a real browser: headless Chromium loads the page, its JavaScript calls the
//! admin API, and the test reads the DOM it rendered (`--dump-dom`). Chromium comes from
//! `scripts/install-test-deps.sh`; without it these tests are skipped, and fail in CI. Pages that
//! need a click are driven over the DevTools protocol by `cdp.py` (python3, standard library only).

use std::time::Duration;

use crate::support::{TestApp, TestConfig, TestReceiver, eventually};

/// The browser, or None outside CI when it is not installed.
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    if found.is_none() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "CI is set but Chromium is not installed: the web UI would go untested; run scripts/install-test-deps.sh"
        );
        eprintln!("Chromium is not installed: web UI cases skipped");
    }
    found
}

/// The DOM of `url` once its scripts have run and their requests have been answered.
async fn render(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{browser}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_lists_events_and_shows_one_with_its_attempts() {
    let Some(browser) = chromium() else { return };
    let rx = TestReceiver::start(500).await;
    let config =
        TestConfig::new().delivery("max_attempts", 1).http("billing", &rx.url()).hmac_source("s", &["billing"]);
    let app = TestApp::spawn_config(&config).await;
    let (status, json) = app.post_signed("s", br#"{"id":"evt_ui","amount":42}"#).await;
    assert_eq!(status, 200);
    let id = json["event_id"].as_str().unwrap().to_string();
    let dead = async || app.store.get_event(&id).await.unwrap().is_some_and(|e| e.summary.status == "dead");
    assert!(eventually(Duration::from_secs(10), dead).await);

    let list = render(browser, &app.admin_url("/")).await;
    assert!(list.contains(&id), "the list shows the event:\n{list}");
    assert!(list.contains(">dead<"), "with its status:\n{list}");

    let detail = render(browser, &app.admin_url(&format!("/#event/{id}"))).await;
    // The body (pretty-printed), the delivery with its failed attempt, the redacted signature.
    for shown in [r#""id": "evt_ui""#, r#""amount": 42"#, "billing", "HTTP 500", "receiver says hi", "[redacted]"] {
        assert!(detail.contains(shown), "the event page shows {shown}:\n{detail}");
    }
    assert!(
        !detail.contains(&crate::support::hmac_hex(crate::support::app::SECRET, br#"{"id":"evt_ui","amount":42}"#))
    );
}

/// A filtered delivery shows its status and the filter's reason on the event page (CONTRACT §7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_page_says_why_a_filter_left_a_destination_out() {
    let Some(browser) = chromium() else { return };
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new().http("ci", &rx.url()).routed_source(
        "s",
        toml::toml! { scheme = "hmac-sha256" header = "X-Signature" secret_file = "secret.txt" },
        vec![crate::support::rule("ci", Some(r#".body.ref == "refs/heads/main""#), None)],
    );
    let app = TestApp::spawn_config(&config).await;
    let (status, json) = app.post_signed("s", br#"{"ref":"refs/heads/feature"}"#).await;
    assert_eq!(status, 200);
    let id = json["event_id"].as_str().unwrap().to_string();
    let list = render(browser, &app.admin_url("/")).await;
    assert!(list.contains(&id) && list.contains(">filtered<"), "the list shows the filtered event:\n{list}");
    let detail = render(browser, &app.admin_url(&format!("/#event/{id}"))).await;
    for shown in ["status-filtered", "no match: .body.ref == \"refs/heads/main\" gave false"] {
        assert!(detail.contains(shown), "the event page shows {shown}:\n{detail}");
    }
    assert_eq!(rx.count(), 0);
}

/// Runs `tests/it/cdp.py`: Chromium opens `url` and runs `steps` (`{"wait": js}` polled until
/// truthy, `{"eval": js}`), driven over the DevTools protocol; returns the DOM at the end.
async fn drive(browser: &str, url: &str, steps: serde_json::Value) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/cdp.py");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .arg(browser)
        .arg(url)
        .arg(steps.to_string())
        .output()
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{dom}\n{}", String::from_utf8_lossy(&out.stderr));
    dom
}

/// The destinations page (CONTRACT §8): each destination's state, backlog, last error and last
/// success; the pause button pauses it in the store (a new event then waits); the chart of the
/// last hour's attempts is an SVG with a bar for each outcome, counting what the receiver got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destinations_page_pauses_with_its_button_and_charts_the_attempts() {
    let Some(browser) = chromium() else { return };
    let rx = TestReceiver::scripted(200, &[500, 500]).await;
    let other = TestReceiver::start(200).await;
    let config = TestConfig::new()
        .delivery("max_attempts", 1)
        .http("crm", &rx.url())
        .http("audit", &other.url())
        .hmac_source("s", &["crm", "audit"]);
    let app = TestApp::spawn_config(&config).await;
    for i in 0..5 {
        assert_eq!(app.post_signed("s", format!(r#"{{"n":{i}}}"#).as_bytes()).await.0, 200);
    }
    assert!(eventually(Duration::from_secs(10), async || rx.count() == 5 && other.count() == 5).await);
    let counted = async || {
        let v: serde_json::Value =
            reqwest::get(app.admin_url("/api/destinations/crm/attempts")).await.unwrap().json().await.unwrap();
        let sum = |o: &str| v["items"].as_array().unwrap().iter().map(|m| m[o].as_u64().unwrap()).sum::<u64>();
        (sum("success"), sum("failure")) == (3, 2)
    };
    assert!(eventually(Duration::from_secs(10), counted).await, "the series counts 3 successes and 2 failures");

    let bars = |destination: &str, outcome: &str| {
        format!(
            "[...document.querySelectorAll('svg.chart[data-destination={destination}] rect.bar-{outcome}')]\
             .reduce((n, r) => n + Number(r.dataset.count), 0)"
        )
    };
    let pause = "document.querySelector('button[data-action=pause][data-destination=crm]')";
    let state = "document.querySelector('tr[data-destination=crm] td.state').textContent";
    let steps = serde_json::json!([
        {"wait": pause},
        {"wait": format!("{} === 3 && {} === 2", bars("crm", "success"), bars("crm", "failure"))},
        {"wait": format!("{} === 5", bars("audit", "success"))},
        {"eval": format!("{pause}.click()")},
        {"wait": format!("{state} === 'paused'")},
        {"wait": "document.querySelector('button[data-action=resume][data-destination=crm]')"},
    ]);
    let dom = drive(browser, &app.admin_url("/#destinations"), steps).await;
    for shown in ["crm", "audit", "HTTP 500 Internal Server Error: receiver says hi", "<svg", "bar-failure"] {
        assert!(dom.contains(shown), "the destinations page shows {shown}:\n{dom}");
    }
    assert!(dom.contains("crm is paused"), "the page says so:\n{dom}");

    // The button paused it in the store: a new event waits for crm, not for audit.
    let listed: serde_json::Value =
        reqwest::get(app.admin_url("/api/destinations")).await.unwrap().json().await.unwrap();
    let crm = listed["items"].as_array().unwrap().iter().find(|d| d["name"] == "crm").unwrap().clone();
    assert_eq!(crm["state"], "paused");
    assert!(crm["last_success_at"].is_string() && crm["dead"] == 2, "{crm}");
    assert_eq!(app.post_signed("s", br#"{"n":"after"}"#).await.0, 200);
    assert!(eventually(Duration::from_secs(10), async || other.count() == 6).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 5, "paused: no attempt");
}

//! Time, driven rather than waited for: a gateway on a [`ManualClock`], whose retries,
//! Retry-After waits, signature tolerances and retention cut-offs follow the clock the test moves.
//! An hour of backoff takes milliseconds, and every figure is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use hookgate::clock::ManualClock;
use hookgate::store::{EventDetail, millis};
use hookgate::{Handler, HandlerError};
use tokio_util::sync::CancellationToken;

use crate::support::app::SECRET;
use crate::support::{TestApp, TestConfig, TestReceiver, eventually, hmac_hex};

/// A gateway on `config`, its clock standing at 2031-01-01 until the test moves it: years from the
/// system's, so anything that read the system clock instead would show.
async fn start(config: TestConfig, handlers: Vec<(&str, Handler)>) -> (TestApp, Arc<ManualClock>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    config.write(dir.path());
    let now = UNIX_EPOCH + Duration::from_secs(1_924_992_000);
    let clock = Arc::new(ManualClock::new(now));
    let app = TestApp::start_with_clock(dir, handlers, clock.clone()).await;
    (app, clock)
}

/// Moves the clock and tells the worker to look again (it would on its own within its idle poll).
fn advance(app: &TestApp, clock: &ManualClock, by: Duration) {
    clock.advance(by);
    app.store.wakeup().notify_one();
}

async fn event(app: &TestApp, id: &str) -> EventDetail {
    app.store.get_event(id).await.unwrap().expect("event stored")
}

/// The first delivery of the only event, once it has `attempts` attempts and is not in flight.
async fn settled(app: &TestApp, id: &str, attempts: usize) -> EventDetail {
    let done = eventually(Duration::from_secs(10), async || {
        let d = &event(app, id).await.deliveries[0];
        d.attempt_log.len() == attempts && d.status != "in_flight"
    })
    .await;
    let ev = event(app, id).await;
    assert!(done, "{attempts} attempt(s) recorded: {:?}", ev.deliveries[0]);
    ev
}

#[tokio::test]
async fn a_retry_waits_for_its_backoff_on_the_clock() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let handler = Handler::new(move |_| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        async move { if n == 0 { Err(HandlerError::retry("first attempt fails")) } else { Ok(()) } }
    });
    let config = TestConfig::new()
        .delivery("initial_backoff", "1h")
        .delivery("max_backoff", "1h")
        .rust("h")
        .hmac_source("s", &["h"]);
    let (app, clock) = start(config, vec![("h", handler)]).await;
    let (_, json) = app.post_signed("s", b"{}").await;
    let id = json["event_id"].as_str().unwrap().to_string();

    let ev = settled(&app, &id, 1).await;
    let d = &ev.deliveries[0];
    assert_eq!(d.status, "failed");
    let wait = d.next_attempt_at.unwrap() - d.attempt_log[0].at;
    assert!((30 * 60_000..=60 * 60_000).contains(&wait), "an hour of backoff with jitter: {wait} ms");

    // Twenty minutes on: not due, nothing runs.
    advance(&app, &clock, Duration::from_secs(20 * 60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried before its time");

    // Past the hour: the retry runs at once, stamped with the clock's time.
    advance(&app, &clock, Duration::from_secs(41 * 60));
    let ev = settled(&app, &id, 2).await;
    assert_eq!(ev.summary.status, "succeeded");
    assert_eq!(ev.deliveries[0].attempt_log[1].at, millis(hookgate::clock::Clock::now(&*clock)));
}

#[tokio::test]
async fn retry_after_sets_the_next_attempt_exactly_and_is_capped_at_a_day() {
    let rx = TestReceiver::start(200).await;
    rx.push_with_retry_after(429, "7200");
    rx.push_with_retry_after(503, "31536000"); // a year
    let config = TestConfig::new().fast_retries().http("rx", &rx.url()).hmac_source("s", &["rx"]);
    let (app, clock) = start(config, Vec::new()).await;
    let (_, json) = app.post_signed("s", b"slow down").await;
    let id = json["event_id"].as_str().unwrap().to_string();

    let d = settled(&app, &id, 1).await.deliveries.remove(0);
    assert_eq!(d.next_attempt_at.unwrap() - d.attempt_log[0].at, 7_200_000, "max(backoff, Retry-After: 7200)");
    advance(&app, &clock, Duration::from_secs(7199));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.count(), 1, "a second early is still early");

    advance(&app, &clock, Duration::from_secs(1));
    let d = settled(&app, &id, 2).await.deliveries.remove(0);
    assert_eq!(d.next_attempt_at.unwrap() - d.attempt_log[1].at, 24 * 3600 * 1000, "a day, not a year");

    advance(&app, &clock, Duration::from_secs(24 * 3600));
    let ev = settled(&app, &id, 3).await;
    assert_eq!(ev.summary.status, "succeeded");
}

#[tokio::test]
async fn a_signature_timestamp_is_judged_by_the_clock() {
    let strict = toml::Table::from_iter([
        ("scheme".to_string(), "stripe".into()),
        ("secret_file".to_string(), "secret.txt".into()),
    ]);
    let config = TestConfig::new().http("rx", "http://127.0.0.1:9/").source("stripe", strict, &["rx"]);
    let (app, clock) = start(config, Vec::new()).await;
    let signed_at = hookgate::clock::Clock::now(&*clock).duration_since(UNIX_EPOCH).unwrap().as_secs();
    let payload = br#"{"id":"evt_t","object":"event"}"#;
    let signed = [format!("{signed_at}.").as_bytes(), payload].concat();
    let header = format!("t={signed_at},v1={}", hmac_hex(SECRET, &signed));
    let post = async || app.post("/hook/stripe", payload, &[("stripe-signature", &header)]).await.status().as_u16();
    assert_eq!(post().await, 200);
    clock.advance(Duration::from_secs(300));
    assert_eq!(post().await, 200, "five minutes old is within the default tolerance");
    clock.advance(Duration::from_secs(1));
    assert_eq!(post().await, 401, "five minutes and a second is not");
}

#[tokio::test]
async fn retention_purges_what_is_older_than_the_clock_says() {
    let rx = TestReceiver::start(200).await;
    let config = TestConfig::new().storage("retention", "7d").http("rx", &rx.url()).hmac_source("s", &["rx"]);
    let (app, clock) = start(config, Vec::new()).await;
    let (_, json) = app.post_signed("s", b"{}").await;
    let id = json["event_id"].as_str().unwrap().to_string();
    settled(&app, &id, 1).await;
    let purge = async || {
        let now = hookgate::clock::Clock::now(&*clock);
        let seven_days = Duration::from_secs(7 * 24 * 3600);
        hookgate::retention::purge_expired(&*app.store, seven_days, now, &CancellationToken::new()).await.unwrap()
    };
    clock.advance(Duration::from_secs(7 * 24 * 3600 - 60));
    assert_eq!(purge().await, 0, "six days and 23:59 old: kept");
    clock.advance(Duration::from_secs(61));
    assert_eq!(purge().await, 1, "a second past seven days: purged");
    assert!(app.store.get_event(&id).await.unwrap().is_none());
}

//! The Store trait's semantics, run against every backend: SQLite always, PostgreSQL when
//! HOOKGATE_TEST_DATABASE_URL is set (CI sets it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate::store::{
    AttemptRecord, Enqueued, EventQuery, NewEvent, NextState, ReplayFilter, Store, millis, sqlite::SqliteStore,
};
use hookgate::verify::{Unverified, Verified, Verifier};

fn verified(body: &str) -> Verified {
    Unverified { path_and_query: "/".into(), headers: Default::default(), body: body.as_bytes().to_vec().into() }
        .verify(&Verifier::insecure(), SystemTime::now())
        .unwrap()
}

async fn enqueue(store: &dyn Store, source: &str, key: &str, dests: &[&str]) -> Enqueued {
    let v = verified(&format!("body of {key}"));
    let dests: Vec<String> = dests.iter().map(|s| s.to_string()).collect();
    store
        .enqueue(NewEvent {
            verified: &v,
            source,
            dedupe_key: key.to_string(),
            content_type: Some("application/json".into()),
            headers_json: "{}".into(),
            destinations: &dests,
            received_at: SystemTime::now(),
        })
        .await
        .unwrap()
}

fn id(e: &Enqueued) -> String {
    match e {
        Enqueued::Queued { event_id } | Enqueued::Duplicate { event_id } => event_id.clone(),
    }
}

/// Every backend under test, each on a fresh database.
pub async fn backends() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    vec![("sqlite", sqlite, Some(dir))]
}

#[tokio::test]
async fn enqueue_dedupes_per_source() {
    for (name, store, _dir) in backends().await {
        let a = enqueue(&*store, "s", "k1", &["d1", "d2"]).await;
        assert!(matches!(a, Enqueued::Queued { .. }), "{name}");
        let b = enqueue(&*store, "s", "k1", &["d1", "d2"]).await;
        assert_eq!(b, Enqueued::Duplicate { event_id: id(&a) }, "{name}");
        let c = enqueue(&*store, "other", "k1", &["d1"]).await;
        assert!(matches!(c, Enqueued::Queued { .. }), "{name}: same key, other source");
        let ev = store.get_event(&id(&a)).await.unwrap().unwrap();
        assert_eq!(ev.deliveries.len(), 2, "{name}: one delivery per destination, none for the duplicate");
        assert_eq!(&ev.body[..], b"body of k1");
        assert_eq!(ev.summary.status, "pending");
    }
}

#[tokio::test]
async fn claim_is_exclusive_and_leases_expire() {
    for (name, store, _dir) in backends().await {
        for i in 0..10 {
            enqueue(&*store, "s", &format!("k{i}"), &["d"]).await;
        }
        let now = SystemTime::now();
        let (a, b) =
            tokio::join!(store.claim(6, Duration::from_secs(60), now), store.claim(6, Duration::from_secs(60), now));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 10, "{name}");
        let mut ids: Vec<i64> = a.iter().chain(&b).map(|c| c.delivery_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "{name}: no delivery claimed twice");
        assert!(store.claim(10, Duration::from_secs(60), now).await.unwrap().is_empty(), "{name}: all leased");
        // After the lease, the deliveries come back with the attempt counted.
        let later = now + Duration::from_secs(61);
        let again = store.claim(20, Duration::from_secs(60), later).await.unwrap();
        assert_eq!(again.len(), 10, "{name}");
        assert!(again.iter().all(|c| c.attempt == 2), "{name}");
        // The first claim's record is refused: a newer claim owns the delivery.
        let stale = &a[0];
        let rec = AttemptRecord {
            delivery_id: stale.delivery_id,
            claim: stale.claim,
            attempt: stale.attempt,
            at: millis(now),
            outcome: "success",
            status_code: Some(200),
            exit_code: None,
            error: None,
            duration_ms: 1,
            next: NextState::Succeeded,
        };
        assert!(!store.record(rec).await.unwrap(), "{name}: stale claim refused");
        let fresh = again.iter().find(|c| c.delivery_id == stale.delivery_id).unwrap();
        let rec = AttemptRecord { claim: fresh.claim, attempt: fresh.attempt, ..rec_of(fresh) };
        assert!(store.record(rec).await.unwrap(), "{name}");
        let ev = store.get_event(&fresh.event_id).await.unwrap().unwrap();
        assert_eq!(ev.summary.status, "succeeded", "{name}");
        assert_eq!(ev.deliveries[0].attempt_log.len(), 2, "{name}: both attempts logged");
    }
}

fn rec_of(c: &hookgate::store::Claimed) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        claim: c.claim,
        attempt: c.attempt,
        at: millis(SystemTime::now()),
        outcome: "success",
        status_code: Some(200),
        exit_code: None,
        error: None,
        duration_ms: 1,
        next: NextState::Succeeded,
    }
}

#[tokio::test]
async fn retries_wait_dead_is_replayable_and_purge_keeps_unfinished() {
    for (name, store, _dir) in backends().await {
        let e = id(&enqueue(&*store, "s", "r1", &["d"]).await);
        let now = SystemTime::now();
        let c = store.claim(1, Duration::from_secs(60), now).await.unwrap().remove(0);
        let retry_at = millis(now) + 60_000;
        store
            .record(AttemptRecord { next: NextState::Retry { at: retry_at }, outcome: "failure", ..rec_of(&c) })
            .await
            .unwrap();
        assert!(store.claim(1, Duration::from_secs(60), now).await.unwrap().is_empty(), "{name}: not due yet");
        assert_eq!(store.next_due().await.unwrap(), Some(retry_at), "{name}");
        let c = store.claim(1, Duration::from_secs(60), now + Duration::from_secs(61)).await.unwrap().remove(0);
        store.record(AttemptRecord { next: NextState::Dead, outcome: "failure", ..rec_of(&c) }).await.unwrap();
        let ev = store.get_event(&e).await.unwrap().unwrap();
        assert_eq!((ev.summary.status.as_str(), ev.deliveries[0].attempts), ("dead", 2), "{name}");
        let dead = store
            .list_events(EventQuery { status: Some("dead".into()), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(dead.items.len(), 1, "{name}");

        let filter = ReplayFilter { status: "dead".into(), destination: Some("d".into()), source: None };
        assert_eq!(store.replay_deliveries(filter).await.unwrap(), 1, "{name}");
        let c = store.claim(5, Duration::from_secs(60), SystemTime::now()).await.unwrap();
        assert_eq!((c.len(), c[0].attempt), (1, 1), "{name}: replay starts a fresh round");

        // Purge: finished and old goes, unfinished stays.
        let done = id(&enqueue(&*store, "s", "p1", &[]).await);
        let future = millis(SystemTime::now()) + 1000;
        assert_eq!(store.purge(future, 100).await.unwrap(), 1, "{name}: only the event with no open delivery");
        assert!(store.get_event(&done).await.unwrap().is_none(), "{name}");
        assert!(store.get_event(&e).await.unwrap().is_some(), "{name}");
        assert_eq!(store.replay_event("no-such-id", None).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn list_events_pages_newest_first() {
    for (name, store, _dir) in backends().await {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(id(&enqueue(&*store, if i % 2 == 0 { "even" } else { "odd" }, &format!("k{i}"), &["d"]).await));
        }
        let first = store.list_events(EventQuery { limit: 2, ..Default::default() }).await.unwrap();
        assert_eq!(
            first.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            vec![ids[4].clone(), ids[3].clone()],
            "{name}"
        );
        let second = store
            .list_events(EventQuery { limit: 2, cursor: first.next_cursor.clone(), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(second.items[0].id, ids[2], "{name}");
        let even = store
            .list_events(EventQuery { limit: 10, source: Some("even".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(even.items.len(), 3, "{name}");
        assert!(even.next_cursor.is_none(), "{name}");
        let bad =
            store.list_events(EventQuery { limit: 1, cursor: Some("garbage".into()), ..Default::default() }).await;
        assert!(bad.is_err(), "{name}");
    }
}

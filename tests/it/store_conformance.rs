//! The Store trait's semantics, run against every backend: SQLite always, PostgreSQL when
//! HOOKGATE_TEST_DATABASE_URL is set (CI sets it).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate::clock::{Clock, ManualClock, SharedClock};
use hookgate::store::postgres::PostgresStore;
use hookgate::store::{AttemptNote, Breaker, Circuit, CircuitChange, DeliveryStatus, EventStatus, Outcome, Rate};
use hookgate::store::{
    AttemptRecord, ClaimRequest, Enqueued, EventQuery, NewEvent, NextState, Planned, ReplayFilter, Store, StoreError,
    Want, millis, new_event_id, sqlite::SqliteStore,
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
            id: new_event_id(),
            verified: &v,
            source,
            dedupe_key: key.to_string(),
            content_type: Some("application/json".into()),
            headers_json: "{}".into(),
            deliveries: Planned::each(&dests),
            received_at: SystemTime::now(),
            traceparent: None,
        })
        .await
        .unwrap()
}

/// Every destination these tests use, up to `n` deliveries in all, leased for a minute.
pub fn any(n: usize) -> ClaimRequest {
    ClaimRequest::each(n, &["d", "d1", "d2", "a", "b"], Duration::from_secs(60))
}

fn id(e: &Enqueued) -> String {
    match e {
        Enqueued::Queued { event_id } | Enqueued::Duplicate { event_id } => event_id.clone(),
    }
}

/// Every backend under test, each on a fresh database.
pub async fn backends() -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    backends_on(hookgate::clock::system()).await
}

/// [`backends`], every time they store taken from `clock`.
pub async fn backends_on(clock: SharedClock) -> Vec<(&'static str, Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db"), clock.clone()).await.unwrap());
    let mut all = vec![("sqlite", sqlite, Some(dir))];
    if let Some(url) = crate::support::pg::fresh_database().await {
        let pg: Arc<dyn Store> = Arc::new(PostgresStore::open(&url, 8, clock).await.unwrap());
        all.push(("postgres", pg, None));
    }
    all
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
async fn each_delivery_is_leased_for_its_destination() {
    for (name, store, _dir) in backends().await {
        enqueue(&*store, "s", "lease", &["quick", "slow", "unlisted"]).await;
        let want = |destination: &str, secs: u64| Want {
            destination: destination.into(),
            max: 10,
            lease: Duration::from_secs(secs),
            rate: None,
        };
        let request = ClaimRequest { total: 10, wants: vec![want("quick", 10), want("slow", 100)] };
        let now = SystemTime::now();
        assert_eq!(store.claim(&request, now).await.unwrap().len(), 2, "{name}: an unlisted destination waits");
        let back = |after: u64| {
            let store = store.clone();
            let request = request.clone();
            async move {
                let mut d: Vec<String> = store
                    .claim(&request, now + Duration::from_secs(after))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.destination)
                    .collect();
                d.sort();
                d
            }
        };
        // Each claim leases again for the destination's lease.
        assert_eq!(back(11).await, ["quick"], "{name}: only the 10 s lease ran out");
        assert_eq!(back(101).await, ["quick", "slow"], "{name}: then the 100 s one");
        let unlisted = store.next_due(&["unlisted".into()]).await.unwrap();
        assert!(unlisted.is_some_and(|t| t <= millis(now)), "{name}: the unlisted destination's delivery waits, due");
    }
}

/// A claim takes of each destination no more than asked, and at most the total in all, one of
/// each destination in turn: a destination that can take one delivery gets one, and a backlog
/// of one destination does not crowd out another's.
#[tokio::test]
async fn claims_take_each_destination_up_to_its_share() {
    for (name, store, _dir) in backends().await {
        for i in 0..6 {
            enqueue(&*store, "s", &format!("slow{i}"), &["slow"]).await;
        }
        for i in 0..6 {
            enqueue(&*store, "s", &format!("fast{i}"), &["fast"]).await;
        }
        let want = |destination: &str, max: usize| Want {
            destination: destination.into(),
            max,
            lease: Duration::from_secs(60),
            rate: None,
        };
        let now = SystemTime::now();
        let count =
            |claimed: &[hookgate::store::Claimed], d: &str| claimed.iter().filter(|c| c.destination == d).count();
        let first =
            store.claim(&ClaimRequest { total: 4, wants: vec![want("slow", 1), want("fast", 10)] }, now).await.unwrap();
        assert_eq!((count(&first, "slow"), count(&first, "fast")), (1, 3), "{name}: one slow, the rest fast");
        let second = store
            .claim(&ClaimRequest { total: 4, wants: vec![want("fast", 10), want("slow", 10)] }, now)
            .await
            .unwrap();
        assert_eq!((count(&second, "slow"), count(&second, "fast")), (2, 2), "{name}: taken in turn");
        // Each destination's deliveries are claimed in the order they were due.
        let keys: Vec<String> = first
            .iter()
            .chain(&second)
            .filter(|c| c.destination == "slow")
            .map(|c| String::from_utf8_lossy(&c.body).into_owned())
            .collect();
        assert_eq!(keys, ["body of slow0", "body of slow1", "body of slow2"], "{name}");
        assert!(
            store.claim(&ClaimRequest { total: 4, wants: vec![want("slow", 0)] }, now).await.unwrap().is_empty(),
            "{name}"
        );
        assert_eq!(store.next_due(&[]).await.unwrap(), None, "{name}: nothing due for no destination");
        assert!(store.next_due(&["slow".into()]).await.unwrap().is_some(), "{name}");
    }
}

#[tokio::test]
async fn claim_is_exclusive_and_leases_expire() {
    for (name, store, _dir) in backends().await {
        for i in 0..10 {
            enqueue(&*store, "s", &format!("k{i}"), &["d"]).await;
        }
        let now = SystemTime::now();
        let six = any(6);
        let (a, b) = tokio::join!(store.claim(&six, now), store.claim(&six, now));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len() + b.len(), 10, "{name}");
        let mut ids: Vec<i64> = a.iter().chain(&b).map(|c| c.delivery_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 10, "{name}: no delivery claimed twice");
        assert!(store.claim(&any(10), now).await.unwrap().is_empty(), "{name}: all leased");
        // After the lease, the deliveries come back with the attempt counted.
        let later = now + Duration::from_secs(61);
        let again = store.claim(&any(20), later).await.unwrap();
        assert_eq!(again.len(), 10, "{name}");
        assert!(again.iter().all(|c| c.attempt == 2), "{name}");
        // The first claim's record is refused: a newer claim owns the delivery.
        let stale = &a[0];
        let rec = AttemptRecord {
            delivery_id: stale.delivery_id,
            claim: stale.claim,
            attempt: stale.attempt,
            at: millis(now),
            outcome: Outcome::Success,
            status_code: Some(200),
            exit_code: None,
            error: None,
            duration_ms: 1,
            next: NextState::Succeeded,
        };
        let failed = AttemptRecord { next: NextState::Dead, outcome: Outcome::Failure, ..rec.clone() };
        assert!(!store.record(failed).await.unwrap(), "{name}: a stale claim's failure is refused");
        // A success with a stale claim was still delivered: it stands.
        assert!(store.record(rec).await.unwrap(), "{name}: a stale claim's success stands");
        let fresh = again.iter().find(|c| c.delivery_id == stale.delivery_id).unwrap();
        let rec = AttemptRecord { next: NextState::Dead, outcome: Outcome::Failure, ..rec_of(fresh) };
        assert!(!store.record(rec).await.unwrap(), "{name}: nothing overwrites a success");
        assert!(!store.record(rec_of(fresh)).await.unwrap(), "{name}: a second success changes nothing");
        let ev = store.get_event(&fresh.event_id).await.unwrap().unwrap();
        assert_eq!(ev.summary.status, "succeeded", "{name}");
        assert_eq!(ev.deliveries[0].attempt_log.len(), 4, "{name}: every attempt logged");
    }
}

fn rec_of(c: &hookgate::store::Claimed) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        claim: c.claim,
        attempt: c.attempt,
        at: millis(SystemTime::now()),
        outcome: Outcome::Success,
        status_code: Some(200),
        exit_code: None,
        error: None,
        duration_ms: 1,
        next: NextState::Succeeded,
    }
}

/// Leases, retries and replays follow the clock the store was opened with: a manual clock drives
/// them, nothing sleeps, and the wall clock plays no part (the clock stands far from it).
#[tokio::test]
async fn leases_retries_and_replays_follow_the_stores_clock() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000); // in 2096
    let clock = Arc::new(ManualClock::new(t0));
    for (name, store, _dir) in backends_on(clock.clone()).await {
        clock.set(t0);
        let all = any(10);
        let claim = || store.claim(&all, clock.now());
        let secs = Duration::from_secs;
        let event = id(&enqueue(&*store, "s", "timed", &["d"]).await);
        // Due from the clock's time on, not before.
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), Some(millis(t0)), "{name}");
        assert!(store.claim(&any(10), t0 - secs(1)).await.unwrap().is_empty(), "{name}: not due yet");
        let first = claim().await.unwrap();
        assert_eq!(first.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1], "{name}");
        clock.advance(secs(59));
        assert!(claim().await.unwrap().is_empty(), "{name}: leased for 60 s");
        clock.advance(secs(2));
        let second = claim().await.unwrap().remove(0);
        assert_eq!(second.attempt, 2, "{name}: the lease ran out, so the delivery is claimed again");
        // A retry in 30 s.
        let retry_at = millis(clock.now()) + 30_000;
        let retry = AttemptRecord {
            outcome: Outcome::Failure,
            at: millis(clock.now()),
            next: NextState::Retry { at: retry_at },
            ..rec_of(&second)
        };
        assert!(store.record(retry).await.unwrap(), "{name}");
        clock.advance(secs(29));
        assert!(claim().await.unwrap().is_empty(), "{name}: the retry is not due yet");
        clock.advance(secs(1));
        let third = claim().await.unwrap().remove(0);
        assert_eq!(third.attempt, 3, "{name}");
        let dead = AttemptRecord { outcome: Outcome::Failure, next: NextState::Dead, ..rec_of(&third) };
        assert!(store.record(dead).await.unwrap(), "{name}");
        // A replay is due at the clock's time.
        clock.advance(secs(3600));
        assert_eq!(store.replay_event(&event, None).await.unwrap(), Some(1), "{name}");
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), Some(millis(clock.now())), "{name}");
        assert_eq!(claim().await.unwrap().remove(0).attempt, 1, "{name}: a replay starts the count again");
        store.close().await;
    }
}

/// A delivery id means the same on every backend: `event_seq * 1024 + slot`, the slot being the
/// delivery's place among its event's destinations.
#[tokio::test]
async fn delivery_ids_derive_from_the_event_on_every_backend() {
    for (name, store, _dir) in backends().await {
        let first = id(&enqueue(&*store, "s", "ids1", &["x", "y"]).await);
        let second = id(&enqueue(&*store, "s", "ids2", &["y", "z", "x"]).await);
        let ids = |event: String| {
            let store = store.clone();
            async move {
                store.get_event(&event).await.unwrap().unwrap().deliveries.iter().map(|d| d.id).collect::<Vec<_>>()
            }
        };
        assert_eq!(ids(first).await, [1024, 1025], "{name}: the first event's seq is 1");
        assert_eq!(ids(second).await, [2048, 2049, 2050], "{name}");
    }
}

/// A PostgreSQL database made before schema version 3 (sequential delivery ids) is renumbered at
/// open, even where a new id is another delivery's old one, and the attempts follow.
#[tokio::test]
async fn postgres_sequential_delivery_ids_are_renumbered_at_open() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let old = crate::support::pg::connect(&url).await;
    old.batch_execute(include_str!("../../migrations/postgres/0001_init.sql")).await.unwrap();
    old.batch_execute(include_str!("../../migrations/postgres/0002_due_by_destination.sql")).await.unwrap();
    old.batch_execute(
        "CREATE TABLE hookgate_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO hookgate_migrations (version) VALUES (1), (2);
         INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body) VALUES
             (1, 'a', 's', '1', 10, '{}', ''), (2, 'b', 's', '2', 20, '{}', ''), (5, 'c', 's', '3', 30, '{}', '');
         SELECT setval('events_seq_seq', 5);
         INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at) VALUES
             (1, 1, 'x', 'succeeded', 0, 0), (2, 1, 'y', 'dead', 0, 0), (3, 2, 'x', 'pending', 0, 0),
             (1024, 5, 'y', 'failed', 0, 0);
         INSERT INTO attempts (delivery_id, attempt, at, outcome, duration_ms) VALUES
             (1, 1, 0, 'success', 0), (2, 1, 0, 'failure', 0), (2, 2, 0, 'failure', 0), (1024, 1, 0, 'timeout', 0);",
    )
    .await
    .unwrap();
    let store = PostgresStore::open(&url, 2, hookgate::clock::system()).await.unwrap();
    let rows = |sql: &'static str| {
        let old = &old;
        async move {
            old.query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                .collect::<Vec<_>>()
        }
    };
    let deliveries = rows("SELECT id, destination || ':' || status FROM deliveries ORDER BY id").await;
    let expected = [(1024, "x:succeeded"), (1025, "y:dead"), (2048, "x:pending"), (5120, "y:failed")];
    assert_eq!(deliveries, expected.map(|(i, s)| (i, s.to_string())));
    let attempts = rows("SELECT delivery_id, outcome FROM attempts ORDER BY id").await;
    let expected = [(1024, "success"), (1025, "failure"), (1025, "failure"), (5120, "timeout")];
    assert_eq!(attempts, expected.map(|(i, s)| (i, s.to_string())));
    // New events get derived ids too, and the attempts' foreign key is back.
    let next = id(&enqueue(&store, "s", "new", &["x", "y"]).await);
    let detail = store.get_event(&next).await.unwrap().unwrap();
    assert_eq!(detail.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(), [6144, 6145]);
    let orphan = old.batch_execute(
        "INSERT INTO attempts (delivery_id, attempt, at, outcome, duration_ms) VALUES (7, 1, 0, 'x', 0)",
    );
    assert!(orphan.await.is_err(), "attempts still reference deliveries");
    store.close().await;
}

#[tokio::test]
async fn retries_wait_dead_is_replayable_and_purge_keeps_unfinished() {
    for (name, store, _dir) in backends().await {
        let e = id(&enqueue(&*store, "s", "r1", &["d"]).await);
        let now = SystemTime::now();
        let c = store.claim(&any(1), now).await.unwrap().remove(0);
        let retry_at = millis(now) + 60_000;
        store
            .record(AttemptRecord { next: NextState::Retry { at: retry_at }, outcome: Outcome::Failure, ..rec_of(&c) })
            .await
            .unwrap();
        assert!(store.claim(&any(1), now).await.unwrap().is_empty(), "{name}: not due yet");
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), Some(retry_at), "{name}");
        let c = store.claim(&any(1), now + Duration::from_secs(61)).await.unwrap().remove(0);
        store.record(AttemptRecord { next: NextState::Dead, outcome: Outcome::Failure, ..rec_of(&c) }).await.unwrap();
        let ev = store.get_event(&e).await.unwrap().unwrap();
        assert_eq!((ev.summary.status.as_str(), ev.deliveries[0].attempts), ("dead", 2), "{name}");
        let dead = store
            .list_events(EventQuery { status: Some(EventStatus::Dead), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(dead.items.len(), 1, "{name}");

        let filter = ReplayFilter { status: DeliveryStatus::Dead, destination: Some("d".into()), source: None };
        assert_eq!(store.replay_deliveries(filter).await.unwrap(), 1, "{name}");
        let c = store.claim(&any(5), SystemTime::now()).await.unwrap();
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

/// CONTRACT §7 on every backend: a filtered delivery is stored with its reason, never claimed,
/// derives the event's status, is delivered by a replay that names its destination (and only
/// then), keeps the request target for transforms, and is finished for retention.
#[tokio::test]
async fn filtered_deliveries_wait_for_a_replay_by_destination() {
    for (name, store, _dir) in backends().await {
        let v = Unverified {
            path_and_query: "/hook/gh?env=prod".into(),
            headers: Default::default(),
            body: b"{}".to_vec().into(),
        }
        .verify(&Verifier::insecure(), SystemTime::now())
        .unwrap();
        let planned = |a: Option<&str>, b: Option<&str>| {
            vec![
                Planned { destination: "a", filtered: a.map(str::to_string), ordering_key: None },
                Planned { destination: "b", filtered: b.map(str::to_string), ordering_key: None },
            ]
        };
        let new = |key: &str, deliveries| NewEvent {
            id: new_event_id(),
            verified: &v,
            source: "gh",
            dedupe_key: key.into(),
            content_type: Some("application/json".into()),
            headers_json: "{}".into(),
            deliveries,
            received_at: SystemTime::now(),
            traceparent: None,
        };
        let half = id(&store.enqueue(new("f1", planned(None, Some("no match: x gave false")))).await.unwrap());
        let all = id(&store.enqueue(new("f2", planned(Some("filter error: boom"), Some("no match")))).await.unwrap());
        let ev = store.get_event(&half).await.unwrap().unwrap();
        assert_eq!(ev.summary.status, "pending", "{name}");
        assert_eq!(
            (ev.deliveries[1].status, ev.deliveries[1].last_error.as_deref()),
            (DeliveryStatus::Filtered, Some("no match: x gave false")),
            "{name}"
        );
        assert_eq!(ev.deliveries[1].next_attempt_at, None, "{name}: a filtered delivery awaits no attempt");
        assert_eq!(store.get_event(&all).await.unwrap().unwrap().summary.status, "filtered", "{name}");
        let filtered = store
            .list_events(EventQuery { status: Some(EventStatus::Filtered), limit: 10, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(filtered.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [all.as_str()], "{name}");

        // Only the due delivery is claimed; it carries the request target.
        let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(
            claimed.iter().map(|c| (c.destination.as_str(), c.path.as_str())).collect::<Vec<_>>(),
            [("a", "/hook/gh?env=prod")],
            "{name}"
        );
        store
            .record(AttemptRecord { next: NextState::Succeeded, outcome: Outcome::Success, ..rec_of(&claimed[0]) })
            .await
            .unwrap();
        assert_eq!(
            store.get_event(&half).await.unwrap().unwrap().summary.status,
            "succeeded",
            "{name}: succeeded or filtered"
        );
        let counts = store.count_by_status().await.unwrap();
        assert!(counts.contains(&(DeliveryStatus::Filtered, 3)), "{name}: {counts:?}");

        // A replay without a destination leaves them; one that names it delivers it.
        assert_eq!(store.replay_event(&half, None).await.unwrap(), Some(1), "{name}: the succeeded one only");
        let _ = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(store.replay_event(&all, Some("b")).await.unwrap(), Some(1), "{name}");
        let c = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(c.iter().map(|c| c.destination.as_str()).collect::<Vec<_>>(), ["b"], "{name}");
        let filter = ReplayFilter { status: DeliveryStatus::Filtered, destination: Some("a".into()), source: None };
        assert_eq!(store.replay_deliveries(filter).await.unwrap(), 1, "{name}");

        // Filtered is finished: an event whose deliveries are all filtered or succeeded is purged.
        let gone = id(&store.enqueue(new("f3", planned(Some("no"), Some("no")))).await.unwrap());
        let future = millis(SystemTime::now()) + 1000;
        assert!(store.purge(future, 100).await.unwrap() >= 1, "{name}");
        assert!(store.get_event(&gone).await.unwrap().is_none(), "{name}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_commit_each_event_once_with_its_deliveries() {
    for (name, store, _dir) in backends().await {
        // 50 keys, each posted 4 times at once: the group commit sees duplicates within one batch
        // and across batches.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move { enqueue(&*store, "s", &format!("k{}", i % 50), &["a", "b"]).await }));
        }
        let mut first: std::collections::HashMap<String, Vec<Enqueued>> = Default::default();
        for (i, t) in tasks.into_iter().enumerate() {
            first.entry(format!("k{}", i % 50)).or_default().push(t.await.unwrap());
        }
        for (key, results) in &first {
            let queued = results.iter().filter(|r| matches!(r, Enqueued::Queued { .. })).count();
            assert_eq!(queued, 1, "{name}: {key} queued exactly once: {results:?}");
            let ids: std::collections::HashSet<String> = results.iter().map(id).collect();
            assert_eq!(ids.len(), 1, "{name}: {key}: every duplicate names the first event");
        }
        let claimed = store.claim(&any(1000), SystemTime::now()).await.unwrap();
        assert_eq!(claimed.len(), 100, "{name}: two deliveries per event, none for duplicates");
    }
}

#[tokio::test]
async fn text_with_nul_is_stored() {
    for (name, store, _dir) in backends().await {
        let e = enqueue(&*store, "s", "nul\0key", &["d"]).await;
        assert!(matches!(e, Enqueued::Queued { .. }), "{name}");
        let again = enqueue(&*store, "s", "nul\0key", &["d"]).await;
        assert_eq!(again, Enqueued::Duplicate { event_id: id(&e) }, "{name}");
        let c = store.claim(&any(1), SystemTime::now()).await.unwrap().remove(0);
        let rec = AttemptRecord {
            next: NextState::Retry { at: millis(SystemTime::now()) + 60_000 },
            outcome: Outcome::Failure,
            error: Some("HTTP 500: \0binary\0".into()),
            ..rec_of(&c)
        };
        assert!(store.record(rec).await.unwrap(), "{name}: an error text with NUL is recorded");
        let ev = store.get_event(&id(&e)).await.unwrap().unwrap();
        assert!(ev.deliveries[0].last_error.as_deref().unwrap().contains("binary"), "{name}");
    }
}

/// An event's trace context, stored at ingest, comes back with every claim of its deliveries
/// (so an attempt on any node is a span of the event's trace); an event without one has none.
#[tokio::test]
async fn the_trace_context_is_stored_with_the_event_and_claimed_with_it() {
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (name, store, _dir) in backends().await {
        let v = verified("traced");
        let dests = vec!["d1".to_string(), "d2".to_string()];
        let new = |key: &str, traceparent: Option<&str>| NewEvent {
            id: new_event_id(),
            verified: &v,
            source: "s",
            dedupe_key: key.into(),
            content_type: None,
            headers_json: "{}".into(),
            deliveries: Planned::each(&dests),
            received_at: SystemTime::now(),
            traceparent: traceparent.map(str::to_string),
        };
        let traced = id(&store.enqueue(new("traced", Some(PARENT))).await.unwrap());
        let plain = id(&store.enqueue(new("plain", None)).await.unwrap());
        let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(claimed.len(), 4, "{name}");
        for c in &claimed {
            let want = (c.event_id == traced).then_some(PARENT);
            assert_eq!(c.traceparent.as_deref(), want, "{name}: {} of {}", c.destination, c.event_id);
        }
        assert!(claimed.iter().any(|c| c.event_id == plain), "{name}");
    }
}

/// Two stores on one PostgreSQL schema: what two hookgate nodes see.
async fn two_nodes() -> Option<(Arc<dyn Store>, Arc<dyn Store>)> {
    let url = crate::support::pg::fresh_database().await?;
    // Opened together: the migration runs once, under its advisory lock.
    let (a, b) = tokio::join!(
        PostgresStore::open(&url, 4, hookgate::clock::system()),
        PostgresStore::open(&url, 4, hookgate::clock::system())
    );
    Some((Arc::new(a.unwrap()), Arc::new(b.unwrap())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_dedupe_and_never_claim_the_same_delivery() {
    let Some((a, b)) = two_nodes().await else { return };
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { enqueue(&*node, "s", &format!("k{}", i % 20), &["d"]).await }));
    }
    let mut queued = 0;
    for t in tasks {
        queued += matches!(t.await.unwrap(), Enqueued::Queued { .. }) as usize;
    }
    assert_eq!(queued, 20, "one event per key across both nodes");
    let now = SystemTime::now();
    let eight = any(8);
    let (x, y, z) = tokio::join!(a.claim(&eight, now), b.claim(&eight, now), a.claim(&eight, now));
    let mut ids: Vec<i64> = [x.unwrap(), y.unwrap(), z.unwrap()].iter().flatten().map(|c| c.delivery_id).collect();
    assert_eq!(ids.len(), 20);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "no delivery claimed by two nodes");
}

#[tokio::test]
async fn postgres_open_keeps_other_nodes_claims() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let a = PostgresStore::open(&url, 2, hookgate::clock::system()).await.unwrap();
    enqueue(&a, "s", "k", &["d"]).await;
    let c = a.claim(&any(1), SystemTime::now()).await.unwrap().remove(0);
    // Another node starting up must not take the delivery back: its owner is alive.
    let b = PostgresStore::open(&url, 2, hookgate::clock::system()).await.unwrap();
    assert!(b.claim(&any(1), SystemTime::now()).await.unwrap().is_empty());
    assert!(a.record(rec_of(&c)).await.unwrap(), "the claim still holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enqueue_on_one_node_wakes_the_others() {
    let Some((a, b)) = two_nodes().await else { return };
    let wakeup = b.wakeup();
    // The listener connects in the background and announces itself with one wakeup.
    tokio::time::timeout(Duration::from_secs(10), wakeup.notified()).await.expect("listener connected");
    let other = Arc::clone(&a);
    let waiter = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), wakeup.notified()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueue(&*other, "s", "wake", &["d"]).await;
    assert!(waiter.await.unwrap().is_ok(), "NOTIFY reached the other node");
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_within_seconds() {
    if crate::support::pg::test_database_url().is_none() {
        return;
    }
    // Nothing listens on port 1.
    let started = std::time::Instant::now();
    let err = PostgresStore::open("postgres://postgres@127.0.0.1:1/test", 2, hookgate::clock::system())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let bad = PostgresStore::open("postgres://127.0.0.1/test?sslmode=allow", 2, hookgate::clock::system())
        .await
        .err()
        .expect("refused");
    assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");
}

/// A TCP proxy in front of PostgreSQL: taking it down is a database outage for whoever connects
/// through it, without touching the shared server (`scripts/pg-restart-test.sh` restarts the real one).
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(port: u16, target: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { port, task }
    }

    /// Refuses new connections and cuts the open ones (dropping the JoinSet aborts them).
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// `url` with its host and port replaced by the proxy's.
fn through(url: &str, proxy: &Proxy) -> (String, std::net::SocketAddr) {
    use std::str::FromStr;
    let c = tokio_postgres::Config::from_str(url).unwrap();
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("the outage test needs a TCP host, not {other:?}"),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let target = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).unwrap().next().unwrap();
    let password = c.get_password().map(|p| format!(":{}", String::from_utf8_lossy(p))).unwrap_or_default();
    let options = c.get_options().unwrap_or_default().replace('=', "%3D");
    let proxied = format!(
        "postgres://{}{password}@127.0.0.1:{}/{}?options={options}",
        c.get_user().unwrap_or("postgres"),
        proxy.port,
        c.get_dbname().unwrap_or("postgres"),
    );
    (proxied, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_gives_unavailable_fast_and_recovers_by_itself() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let target = through(&url, &Proxy { port: 0, task: tokio::spawn(async {}) }).1;
    let proxy = Proxy::start(0, target).await;
    let (proxied, _) = through(&url, &proxy);
    let store = PostgresStore::open(&proxied, 4, hookgate::clock::system()).await.unwrap();
    let before = id(&enqueue(&store, "s", "before", &["d"]).await);
    let wakeup = store.wakeup();
    tokio::time::timeout(Duration::from_secs(10), wakeup.notified()).await.expect("listener connected");

    // Down: every operation fails, quickly.
    let port = proxy.port;
    proxy.stop().await;
    let started = std::time::Instant::now();
    assert!(store.ping().await.is_err(), "ping while down");
    let v = verified("during");
    let err = store
        .enqueue(NewEvent {
            id: new_event_id(),
            verified: &v,
            source: "s",
            dedupe_key: "during".into(),
            content_type: None,
            headers_json: "{}".into(),
            deliveries: Planned::each(&["d".to_string()]),
            received_at: SystemTime::now(),
            traceparent: None,
        })
        .await
        .expect_err("enqueue while down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert!(store.claim(&any(10), SystemTime::now()).await.is_err(), "claim while down");
    assert!(started.elapsed() < Duration::from_secs(8), "failed fast: {:?}", started.elapsed());

    // Back: the pool reconnects, the listener too, nothing was lost.
    let _proxy = Proxy::start(port, target).await;
    assert!(
        crate::support::eventually(Duration::from_secs(15), async || store.ping().await.is_ok()).await,
        "ping after the outage"
    );
    // A NOTIFY sent straight to the server reaches the store again: its listener reconnected.
    let (direct, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let heard = crate::support::eventually(Duration::from_secs(15), async || {
        let _ = tokio::time::timeout(Duration::ZERO, wakeup.notified()).await; // an old wakeup
        direct.batch_execute("NOTIFY hookgate_work").await.unwrap();
        tokio::time::timeout(Duration::from_millis(300), wakeup.notified()).await.is_ok()
    })
    .await;
    assert!(heard, "the notification listener reconnected");
    let after = enqueue(&store, "s", "after", &["d"]).await;
    assert!(matches!(after, Enqueued::Queued { .. }));
    assert!(store.get_event(&before).await.unwrap().is_some());
    let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
    assert_eq!(claimed.len(), 2, "the event from before and the one after; none from the outage");
}

/// A statement that outlives the operation's bound is cancelled on the server, not only given up
/// by the caller: a bulk replay answered "unavailable" never commits later, when the lock it was
/// waiting for goes away.
#[tokio::test]
async fn postgres_an_operation_that_timed_out_never_commits_later() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let store = PostgresStore::open(&url, 2, hookgate::clock::system()).await.unwrap();
    let e = id(&enqueue(&store, "s", "k", &["d"]).await);
    let c = store.claim(&any(1), SystemTime::now()).await.unwrap().remove(0);
    store.record(AttemptRecord { next: NextState::Dead, outcome: Outcome::Failure, ..rec_of(&c) }).await.unwrap();
    // Another session holds the deliveries table, as a long migration or a vacuum full would.
    let other = crate::support::pg::connect(&url).await;
    other.batch_execute("BEGIN; LOCK TABLE deliveries IN EXCLUSIVE MODE").await.unwrap();
    let filter = ReplayFilter { status: DeliveryStatus::Dead, destination: None, source: None };
    let replay = store.replay_deliveries(filter).await;
    assert!(matches!(replay, Err(StoreError::Unavailable(_))), "{replay:?}");
    other.batch_execute("COMMIT").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ev = store.get_event(&e).await.unwrap().unwrap();
    assert_eq!(ev.deliveries[0].status, "dead", "the replay that answered unavailable did not commit");
}

/// Delivery control (CONTRACT §8): a paused destination gets no claims and is never due, on a
/// state the store keeps (read back by a second handle on PostgreSQL); resume lets them go.
#[tokio::test]
async fn a_paused_destination_gets_no_claims_until_resumed() {
    for (name, store, _dir) in backends().await {
        for i in 0..3 {
            enqueue(&*store, "s", &format!("p{i}"), &["d", "a"]).await;
        }
        store.set_paused("d", true).await.unwrap();
        let states = store.destination_states(&["d".into(), "a".into()]).await.unwrap();
        assert_eq!(states.iter().map(|s| s.shown()).collect::<Vec<_>>(), ["paused", "active"], "{name}");
        let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert!(claimed.iter().all(|c| c.destination == "a") && claimed.len() == 3, "{name}: only the active one");
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), None, "{name}: a paused destination is never due");
        let counts = store.count_by_destination(&["d".into()]).await.unwrap();
        assert!(counts.contains(&("d".into(), DeliveryStatus::Pending, 3)), "{name}: {counts:?}");
        store.set_paused("d", false).await.unwrap();
        let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(claimed.iter().filter(|c| c.destination == "d").count(), 3, "{name}: resumed");
        assert_eq!(claimed.iter().map(|c| c.attempt).max(), Some(1), "{name}: the wait was no attempt");
        store.close().await;
    }
}

/// The circuit breaker's timeline on the store's clock: `failures` in a row open it, no claims in
/// the cooldown (deliveries keep their attempts), one trial after it (half_open, a second claim
/// gets nothing), a failed trial doubles the cooldown, a successful one closes it.
#[tokio::test]
async fn the_circuit_opens_trials_once_and_closes() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let secs = Duration::from_secs;
    let breaker = Some(Breaker { failures: 2, cooldown: secs(10), max: secs(3600) });
    for (name, store, _dir) in backends_on(clock.clone()).await {
        clock.set(t0);
        for i in 0..4 {
            enqueue(&*store, "s", &format!("c{i}"), &["d"]).await;
        }
        let one = || ClaimRequest::each(1, &["d"], secs(60));
        let note = |ok: bool| AttemptNote {
            destination: "d".into(),
            ok,
            error: (!ok).then(|| "HTTP 503".into()),
            at: millis(clock.now()),
            breaker,
        };
        let fail = |c: &hookgate::store::Claimed| AttemptRecord {
            outcome: Outcome::Failure,
            at: millis(clock.now()),
            next: NextState::Retry { at: millis(clock.now()) },
            ..rec_of(c)
        };
        for expected in [None, Some(CircuitChange::Opened)] {
            let c = store.claim(&one(), clock.now()).await.unwrap().remove(0);
            assert!(store.record(fail(&c)).await.unwrap());
            assert_eq!(store.note_attempt(note(false)).await.unwrap(), expected, "{name}");
        }
        let state = &store.destination_states(&["d".into()]).await.unwrap()[0];
        assert_eq!((state.shown(), state.last_error.as_deref()), ("open", Some("HTTP 503")), "{name}");
        assert!(store.claim(&any(10), clock.now()).await.unwrap().is_empty(), "{name}: open");
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), Some(millis(t0 + secs(10))), "{name}");
        clock.advance(secs(10));
        let trial = store.claim(&any(10), clock.now()).await.unwrap();
        assert_eq!(trial.len(), 1, "{name}: one trial");
        assert!(store.claim(&any(10), clock.now()).await.unwrap().is_empty(), "{name}: only one");
        assert_eq!(store.destination_states(&["d".into()]).await.unwrap()[0].circuit, Circuit::HalfOpen, "{name}");
        assert!(store.record(fail(&trial[0])).await.unwrap());
        assert_eq!(store.note_attempt(note(false)).await.unwrap(), Some(CircuitChange::Reopened), "{name}");
        clock.advance(secs(19));
        assert!(store.claim(&any(10), clock.now()).await.unwrap().is_empty(), "{name}: the cooldown doubled");
        clock.advance(secs(1));
        let trial = store.claim(&any(10), clock.now()).await.unwrap();
        assert_eq!(trial.len(), 1, "{name}");
        assert_eq!(store.note_attempt(note(true)).await.unwrap(), Some(CircuitChange::Closed), "{name}");
        let rest = store.claim(&any(10), clock.now()).await.unwrap();
        assert_eq!(rest.len(), 3, "{name}: closed, the others go");
        let query = hookgate::store::DeliveryQuery { destination: Some("d".into()), limit: 10, ..Default::default() };
        let attempts: u32 = store.list_deliveries(query).await.unwrap().items.iter().map(|d| d.attempts).sum();
        assert_eq!(attempts, 2 + 1 + 1 + 3, "{name}: one attempt per claim, none while held back");
        let state = &store.destination_states(&["d".into()]).await.unwrap()[0];
        assert_eq!((state.shown(), state.last_success_at), ("active", Some(millis(clock.now()))), "{name}");
        store.close().await;
    }
}

/// A rate limit is a token bucket in the destination's row that the claim takes from: a burst,
/// then one per 1/per_second, and `next_due` waits for the next token. Waiting is no attempt.
#[tokio::test]
async fn a_rate_limited_claim_takes_tokens_from_the_stored_bucket() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let ms = Duration::from_millis;
    for (name, store, _dir) in backends_on(clock.clone()).await {
        clock.set(t0);
        for i in 0..10 {
            enqueue(&*store, "s", &format!("r{i}"), &["d"]).await;
        }
        let rate = Some(Rate { per_second: 2.0, burst: 3.0 });
        let limited = ClaimRequest {
            total: 10,
            wants: vec![Want { destination: "d".into(), max: 10, lease: Duration::from_secs(60), rate }],
        };
        let claim = |at: SystemTime| {
            let (store, limited) = (store.clone(), limited.clone());
            async move { store.claim(&limited, at).await.unwrap().len() }
        };
        assert_eq!(claim(t0).await, 3, "{name}: the burst");
        assert_eq!(claim(t0).await, 0, "{name}: the bucket is empty");
        assert_eq!(store.next_due(&["d".into()]).await.unwrap(), Some(millis(t0 + ms(500))), "{name}");
        assert_eq!(claim(t0 + ms(499)).await, 0, "{name}");
        assert_eq!(claim(t0 + ms(500)).await, 1, "{name}: one token per 500 ms");
        assert_eq!(claim(t0 + ms(2500)).await, 3, "{name}: refilled up to burst only");
        let pending = store.count_by_destination(&["d".into()]).await.unwrap();
        assert!(pending.contains(&("d".into(), DeliveryStatus::Pending, 3)), "{name}: the rest wait, {pending:?}");
        store.close().await;
    }
}

/// Ordering keys (CONTRACT §8): a keyed delivery is claimable only when no delivery of its
/// destination and key with a lower id is open; a retry holds its key, a dead one releases it;
/// other keys and unkeyed deliveries go in parallel.
#[tokio::test]
async fn an_ordering_key_holds_later_deliveries_until_the_earlier_finishes() {
    for (name, store, _dir) in backends().await {
        let mut ids = Vec::new();
        for (i, key) in [Some("A"), Some("B"), Some("A"), None, Some("A")].into_iter().enumerate() {
            let v = verified(&format!("ordered {i}"));
            let planned = vec![Planned { destination: "d", filtered: None, ordering_key: key.map(str::to_string) }];
            let e = store
                .enqueue(NewEvent {
                    id: new_event_id(),
                    verified: &v,
                    source: "s",
                    dedupe_key: format!("o{i}"),
                    content_type: None,
                    headers_json: "{}".into(),
                    deliveries: planned,
                    received_at: SystemTime::now(),
                    traceparent: None,
                })
                .await
                .unwrap();
            ids.push(id(&e));
        }
        let now = SystemTime::now();
        let claimed = store.claim(&any(10), now).await.unwrap();
        let got = |c: &[hookgate::store::Claimed]| {
            let mut v: Vec<usize> = c.iter().map(|c| ids.iter().position(|i| *i == c.event_id).unwrap()).collect();
            v.sort();
            v
        };
        assert_eq!(got(&claimed), [0, 1, 3], "{name}: the first of A, B, and the unkeyed one");
        let first = claimed.iter().find(|c| c.event_id == ids[0]).unwrap();
        let retry_at = millis(now) + 1000;
        let retry =
            AttemptRecord { outcome: Outcome::Failure, next: NextState::Retry { at: retry_at }, ..rec_of(first) };
        assert!(store.record(retry).await.unwrap());
        assert!(store.claim(&any(10), now).await.unwrap().is_empty(), "{name}: a retry holds its key");
        let again = store.claim(&any(10), now + Duration::from_secs(2)).await.unwrap();
        assert_eq!(got(&again), [0], "{name}: the retry goes first, still alone");
        let dead = AttemptRecord { outcome: Outcome::Failure, next: NextState::Dead, ..rec_of(&again[0]) };
        assert!(store.record(dead).await.unwrap());
        let next = store.claim(&any(10), now + Duration::from_secs(2)).await.unwrap();
        assert_eq!(got(&next), [2], "{name}: a dead one releases its key, to the next in ingest order");
        assert!(store.record(rec_of(&next[0])).await.unwrap());
        let last = store.claim(&any(10), now + Duration::from_secs(2)).await.unwrap();
        assert_eq!(got(&last), [4], "{name}: a success releases it too");
        store.close().await;
    }
}

/// The circuit is one state for every node on PostgreSQL: failures noted on one node open it for
/// the other, and when the cooldown ends the two nodes claiming at once start one trial between
/// them; its success, noted on either, closes it for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nodes_share_the_circuit_and_start_one_trial() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let clock = Arc::new(ManualClock::new(t0));
    let (a, b) = tokio::join!(PostgresStore::open(&url, 4, clock.clone()), PostgresStore::open(&url, 4, clock.clone()));
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    for i in 0..4 {
        enqueue(&*a, "s", &format!("n{i}"), &["d"]).await;
    }
    let breaker = Some(Breaker { failures: 2, cooldown: Duration::from_secs(10), max: Duration::from_secs(3600) });
    let note = |ok: bool| AttemptNote {
        destination: "d".into(),
        ok,
        error: (!ok).then(|| "HTTP 503".into()),
        at: millis(clock.now()),
        breaker,
    };
    // One failure on each node: two in a row for the destination.
    for (node, expected) in [(&a, None), (&b, Some(CircuitChange::Opened))] {
        let c = node.claim(&ClaimRequest::each(1, &["d"], Duration::from_secs(60)), clock.now()).await.unwrap();
        let failed = AttemptRecord {
            outcome: Outcome::Failure,
            next: NextState::Retry { at: millis(clock.now()) },
            ..rec_of(&c[0])
        };
        assert!(node.record(failed).await.unwrap());
        assert_eq!(node.note_attempt(note(false)).await.unwrap(), expected);
    }
    assert_eq!(a.destination_states(&["d".into()]).await.unwrap()[0].shown(), "open", "a sees b's opening");
    assert!(a.claim(&any(10), clock.now()).await.unwrap().is_empty(), "open on a");
    assert!(b.claim(&any(10), clock.now()).await.unwrap().is_empty(), "open on b");
    clock.advance(Duration::from_secs(10));
    let ten = any(10);
    let (x, y) = tokio::join!(a.claim(&ten, clock.now()), b.claim(&ten, clock.now()));
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.len() + y.len(), 1, "one trial between both nodes: {} + {}", x.len(), y.len());
    let (trial_node, other) = if x.len() == 1 { (&a, &b) } else { (&b, &a) };
    let trial = x.into_iter().chain(y).next().unwrap();
    assert!(trial_node.record(rec_of(&trial)).await.unwrap());
    assert_eq!(trial_node.note_attempt(note(true)).await.unwrap(), Some(CircuitChange::Closed));
    assert_eq!(other.destination_states(&["d".into()]).await.unwrap()[0].shown(), "active");
    assert_eq!(other.claim(&any(10), clock.now()).await.unwrap().len(), 3, "closed for the other node too");
    a.close().await;
    b.close().await;
}

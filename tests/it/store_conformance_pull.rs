//! What pull destinations need of every backend (CONTRACT §10): `Store::held` tells a delivery's
//! claim (an ack or nack names only the delivery), and `Store::work` wakes any number of waiting
//! claims, on PostgreSQL across nodes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate::store::postgres::PostgresStore;
use hookgate::store::{
    AttemptRecord, ClaimRequest, DeliveryStatus, NewEvent, NextState, Outcome, Planned, Store, millis, new_event_id,
};
use hookgate::verify::{Unverified, Verifier};

use crate::store_conformance::backends;

async fn enqueue(store: &dyn Store, key: &str, destination: &str) -> String {
    let v =
        Unverified { path_and_query: "/".into(), headers: Default::default(), body: key.as_bytes().to_vec().into() }
            .verify(&Verifier::insecure(), SystemTime::now())
            .unwrap();
    let dests = vec![destination.to_string()];
    let id = new_event_id();
    store
        .enqueue(NewEvent {
            id: id.clone(),
            verified: &v,
            source: "s",
            dedupe_key: key.to_string(),
            content_type: None,
            headers_json: "{}".into(),
            deliveries: Planned::each(&dests),
            received_at: SystemTime::now(),
            traceparent: None,
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn held_tells_a_deliverys_claim_attempts_and_lease() {
    for (name, store, _dir) in backends().await {
        let event = enqueue(&*store, "k", "laptop").await;
        let delivery = store.get_event(&event).await.unwrap().unwrap().deliveries[0].id;
        let before = store.held(delivery).await.unwrap().expect("the delivery exists");
        assert_eq!(
            (before.status, before.attempts, before.claim, before.destination.as_str()),
            (DeliveryStatus::Pending, 0, None, "laptop"),
            "{name}"
        );
        let now = SystemTime::now();
        let c = store.claim(&ClaimRequest::each(1, &["laptop"], Duration::from_secs(30)), now).await.unwrap().remove(0);
        let held = store.held(delivery).await.unwrap().unwrap();
        assert_eq!((held.status, held.attempts, held.claim), (DeliveryStatus::InFlight, 1, Some(c.claim)), "{name}");
        assert_eq!(held.lease_until, Some(millis(now) + 30_000), "{name}: the lease the claim gave");
        let record = AttemptRecord {
            delivery_id: delivery,
            claim: c.claim,
            attempt: 1,
            at: millis(now),
            outcome: Outcome::Failure,
            status_code: None,
            exit_code: None,
            error: Some("nacked".into()),
            duration_ms: 1,
            next: NextState::Retry { at: millis(now) + 60_000 },
        };
        assert!(store.record(record).await.unwrap());
        let after = store.held(delivery).await.unwrap().unwrap();
        assert_eq!((after.status, after.attempts, after.claim), (DeliveryStatus::Failed, 1, None), "{name}");
        assert_eq!(store.held(delivery + 999_999).await.unwrap(), None, "{name}: no such delivery");
    }
}

#[tokio::test]
async fn every_watcher_of_work_sees_an_enqueue() {
    for (name, store, _dir) in backends().await {
        let (mut first, mut second) = (store.work(), store.work());
        first.borrow_and_update();
        second.borrow_and_update();
        enqueue(&*store, "wake", "laptop").await;
        for rx in [&mut first, &mut second] {
            let woke = tokio::time::timeout(Duration::from_secs(10), rx.changed()).await;
            assert!(woke.is_ok_and(|r| r.is_ok()), "{name}: each watcher is told");
        }
        // The dispatcher's permit is still there: watchers take nothing from it.
        let notified = tokio::time::timeout(Duration::from_secs(10), store.wakeup().notified()).await;
        assert!(notified.is_ok(), "{name}: the dispatcher is told too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_enqueue_on_one_node_wakes_a_watcher_on_another() {
    let Some(url) = crate::support::pg::fresh_database().await else { return };
    let (a, b) = tokio::join!(
        PostgresStore::open(&url, 4, hookgate::clock::system()),
        PostgresStore::open(&url, 4, hookgate::clock::system())
    );
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    let mut work = b.work();
    // The listening connection announces itself with one signal once it listens.
    tokio::time::timeout(Duration::from_secs(10), work.changed()).await.expect("listener connected").unwrap();
    work.borrow_and_update();
    enqueue(&*a, "elsewhere", "laptop").await;
    let woke = tokio::time::timeout(Duration::from_secs(10), work.changed()).await;
    assert!(woke.is_ok_and(|r| r.is_ok()), "NOTIFY reached the watcher on the other node");
}

//! The Store methods behind the admin API (list, replay, count, purge), against every backend of
//! `store_conformance::backends()`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use hookgate::store::{
    AttemptRecord, Claimed, DeliveryQuery, Enqueued, EventQuery, NewEvent, NextState, Planned, ReplayFilter, Store,
    millis, new_event_id,
};
use hookgate::store::{DeliveryStatus, EventStatus, Outcome};
use hookgate::verify::{Unverified, Verifier};

use crate::store_conformance::{any, backends};

async fn enqueue_at(store: &dyn Store, source: &str, key: &str, dests: &[&str], at: SystemTime) -> String {
    let v =
        Unverified { path_and_query: "/".into(), headers: Default::default(), body: key.as_bytes().to_vec().into() }
            .verify(&Verifier::insecure(), SystemTime::now())
            .unwrap();
    let dests: Vec<String> = dests.iter().map(|s| s.to_string()).collect();
    let e = store
        .enqueue(NewEvent {
            id: new_event_id(),
            verified: &v,
            source,
            dedupe_key: key.to_string(),
            content_type: None,
            headers_json: "{}".into(),
            deliveries: Planned::each(&dests),
            received_at: at,
            traceparent: None,
        })
        .await
        .unwrap();
    match e {
        Enqueued::Queued { event_id } => event_id,
        Enqueued::Duplicate { .. } => panic!("unexpected duplicate"),
    }
}

async fn enqueue(store: &dyn Store, source: &str, key: &str, dests: &[&str]) -> String {
    enqueue_at(store, source, key, dests, SystemTime::now()).await
}

fn record(c: &Claimed, next: NextState, status_code: Option<u16>, exit_code: Option<i32>) -> AttemptRecord {
    AttemptRecord {
        delivery_id: c.delivery_id,
        claim: c.claim,
        attempt: c.attempt,
        at: millis(SystemTime::now()),
        outcome: if next == NextState::Succeeded { Outcome::Success } else { Outcome::Failure },
        status_code,
        exit_code,
        error: (next != NextState::Succeeded).then(|| "HTTP 500: nope".to_string()),
        duration_ms: 7,
        next,
    }
}

fn find<'a>(claimed: &'a [Claimed], event: &str, dest: &str) -> &'a Claimed {
    claimed.iter().find(|c| c.event_id == event && c.destination == dest).unwrap()
}

#[tokio::test]
async fn deliveries_list_replay_and_count_by_status() {
    for (name, store, _dir) in backends().await {
        let e1 = enqueue(&*store, "a", "k1", &["d1", "d2"]).await;
        let e2 = enqueue(&*store, "b", "k2", &["d1"]).await;
        let e3 = enqueue(&*store, "a", "k3", &["d2"]).await;

        let all = store.list_deliveries(DeliveryQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.items.len(), 4, "{name}");
        assert!(all.items.windows(2).all(|w| w[0].id > w[1].id), "{name}: newest first");
        assert!(all.next_cursor.is_none(), "{name}");
        let q = |status: Option<&str>, destination: Option<&str>, source: Option<&str>| DeliveryQuery {
            status: status.and_then(DeliveryStatus::parse),
            destination: destination.map(str::to_string),
            source: source.map(str::to_string),
            limit: 10,
            cursor: None,
        };
        assert_eq!(store.list_deliveries(q(None, Some("d1"), None)).await.unwrap().items.len(), 2, "{name}");
        assert_eq!(store.list_deliveries(q(None, None, Some("a"))).await.unwrap().items.len(), 3, "{name}");
        assert_eq!(store.list_deliveries(q(None, Some("d2"), Some("b"))).await.unwrap().items.len(), 0, "{name}");
        let mut seen = HashSet::new();
        let mut cursor = None;
        loop {
            let page = store.list_deliveries(DeliveryQuery { limit: 3, cursor, ..Default::default() }).await.unwrap();
            for d in &page.items {
                assert!(seen.insert(d.id), "{name}: delivery {} listed twice", d.id);
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 4, "{name}: the cursor walks every delivery");

        // e1→d1 dead, e1→d2 succeeded, e2→d1 failed (retry later), e3→d2 in flight.
        let claimed = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(claimed.len(), 4, "{name}");
        let later = millis(SystemTime::now()) + 3_600_000;
        assert!(store.record(record(find(&claimed, &e1, "d1"), NextState::Dead, Some(500), None)).await.unwrap());
        assert!(store.record(record(find(&claimed, &e1, "d2"), NextState::Succeeded, Some(200), None)).await.unwrap());
        let retry = NextState::Retry { at: later };
        assert!(store.record(record(find(&claimed, &e2, "d1"), retry, None, Some(3))).await.unwrap());

        let counts = store.count_by_status().await.unwrap();
        for status in DeliveryStatus::NAMES {
            let want = match status {
                "pending" | "filtered" => 0,
                _ => 1,
            };
            let got = counts.iter().find(|(s, _)| s.as_str() == status).map(|(_, n)| *n);
            assert_eq!(got, Some(want), "{name}: {status} in {counts:?}");
        }
        let failed = store.list_deliveries(q(Some("failed"), None, None)).await.unwrap().items;
        assert_eq!((failed.len(), failed[0].next_attempt_at), (1, Some(later)), "{name}");
        assert_eq!(failed[0].last_error.as_deref(), Some("HTTP 500: nope"), "{name}");

        let ev = store.get_event(&e2).await.unwrap().unwrap();
        let log = &ev.deliveries[0].attempt_log;
        assert_eq!(
            (log.len(), log[0].exit_code, log[0].status_code, log[0].duration_ms),
            (1, Some(3), None, 7),
            "{name}"
        );
        let statuses = |page: hookgate::store::Page<hookgate::store::EventSummary>| {
            page.items.into_iter().map(|e| (e.id, e.status)).collect::<Vec<_>>()
        };
        let events = store.list_events(EventQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(
            statuses(events),
            vec![
                (e3.clone(), EventStatus::Pending),
                (e2.clone(), EventStatus::Pending),
                (e1.clone(), EventStatus::Dead)
            ],
            "{name}: dead if any delivery is dead, else pending until all succeeded"
        );

        // Replays: by event and destination, never what is in flight.
        assert_eq!(store.replay_event(&e1, Some("nowhere")).await.unwrap(), Some(0), "{name}");
        assert_eq!(store.replay_event(&e3, None).await.unwrap(), Some(0), "{name}: in flight is left alone");
        assert_eq!(store.replay_event(&e1, Some("d2")).await.unwrap(), Some(1), "{name}: succeeded can be replayed");
        let by_source = ReplayFilter { status: DeliveryStatus::Dead, destination: None, source: Some("b".into()) };
        assert_eq!(store.replay_deliveries(by_source).await.unwrap(), 0, "{name}");
        let failed_now = ReplayFilter { status: DeliveryStatus::Failed, destination: Some("d1".into()), source: None };
        assert_eq!(
            store.replay_deliveries(failed_now).await.unwrap(),
            1,
            "{name}: a failed delivery can skip its backoff"
        );
        let dead =
            ReplayFilter { status: DeliveryStatus::Dead, destination: Some("d1".into()), source: Some("a".into()) };
        assert_eq!(store.replay_deliveries(dead).await.unwrap(), 1, "{name}");
        let requeued = store.claim(&any(10), SystemTime::now()).await.unwrap();
        assert_eq!(requeued.len(), 3, "{name}: e1→d1, e1→d2 and e2→d1 are due again");
        assert!(requeued.iter().all(|c| c.attempt == 1), "{name}: a replay starts a fresh round");
        let ev = store.get_event(&e1).await.unwrap().unwrap();
        assert!(ev.deliveries.iter().all(|d| d.attempt_log.len() == 1), "{name}: the log keeps earlier attempts");
    }
}

#[tokio::test]
async fn purge_goes_by_age_and_batch_and_keeps_unfinished_work() {
    for (name, store, _dir) in backends().await {
        let now = SystemTime::now();
        let old = now - Duration::from_secs(3600);
        let mut finished = Vec::new();
        for i in 0..5 {
            // No destinations: finished at once.
            finished.push(enqueue_at(&*store, "s", &format!("old{i}"), &[], old).await);
        }
        let unfinished = enqueue_at(&*store, "s", "old-pending", &["d"], old).await;
        let young = enqueue_at(&*store, "s", "young", &[], now).await;

        let since = store
            .list_events(EventQuery { limit: 10, since: Some(millis(now) - 1000), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(since.items.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), vec![young.clone()], "{name}");
        let until = store
            .list_events(EventQuery { limit: 10, until: Some(millis(now) - 1000), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(until.items.len(), 6, "{name}");

        let cutoff = millis(now) - 60_000;
        assert_eq!(store.purge(cutoff, 2).await.unwrap(), 2, "{name}: at most one batch");
        assert_eq!(store.purge(cutoff, 2).await.unwrap(), 2, "{name}");
        assert_eq!(store.purge(cutoff, 2).await.unwrap(), 1, "{name}");
        assert_eq!(store.purge(cutoff, 2).await.unwrap(), 0, "{name}");
        for id in &finished {
            assert!(store.get_event(id).await.unwrap().is_none(), "{name}");
        }
        assert!(store.get_event(&unfinished).await.unwrap().is_some(), "{name}: pending work is never purged");
        assert!(store.get_event(&young).await.unwrap().is_some(), "{name}: younger than the cutoff");

        // Dead counts as finished; its attempt log goes with it.
        let c = store.claim(&any(1), SystemTime::now()).await.unwrap().remove(0);
        assert!(store.record(record(&c, NextState::Dead, Some(500), None)).await.unwrap());
        assert_eq!(store.purge(cutoff, 100).await.unwrap(), 1, "{name}");
        assert!(store.get_event(&unfinished).await.unwrap().is_none(), "{name}");
        let left = store.list_deliveries(DeliveryQuery { limit: 10, ..Default::default() }).await.unwrap();
        assert!(left.items.is_empty(), "{name}: deliveries went with their events");
    }
}

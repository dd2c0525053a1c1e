//! Unit tests of the embedded store's writer, schema and queries.

use super::health::Verdict;
use super::*;

fn row(id: &str, key: &str) -> EventRow {
    EventRow {
        id: id.into(),
        source: "s".into(),
        dedupe_key: key.into(),
        content_type: None,
        headers_json: "{}".into(),
        body: Bytes::from_static(b"{}"),
        path: "/s".into(),
        deliveries: vec![("d".into(), None, None)],
        received_at: 0,
        traceparent: None,
    }
}

fn enqueue(row: EventRow) -> (Job, oneshot::Receiver<Result<Enqueued, StoreError>>) {
    let (reply, rx) = oneshot::channel();
    (Job::Enqueue(row, Answer::new(reply)), rx)
}

fn job(row: EventRow) -> Job {
    enqueue(row).0
}

/// The database file at `path`, configured and at the newest schema.
fn migrated(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    configure(&conn).unwrap();
    migrate(&conn).unwrap();
    conn
}

/// A job that fails in the middle of a batch fails alone: the jobs before and after it commit.
#[test]
fn a_failing_job_does_not_undo_the_rest_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = migrated(&dir.path().join("t.db"));
    assert!(run_batch(&mut conn, &mut [job(row("a", "1"))], &BatchTime::default()).0[0].is_ok());
    // The same event id under a new dedupe key breaks the id's UNIQUE constraint.
    let mut batch: Vec<Job> = [row("b", "2"), row("a", "3"), row("c", "4")].into_iter().map(job).collect();
    let (results, wake, _) = run_batch(&mut conn, &mut batch, &BatchTime::default());
    assert!(wake);
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    // Last in its batch, a failing job still fails alone.
    let mut batch: Vec<Job> = [row("d", "5"), row("a", "6")].into_iter().map(job).collect();
    let (results, _, _) = run_batch(&mut conn, &mut batch, &BatchTime::default());
    assert!(results[0].is_ok() && results[1].is_err());
    assert_eq!(column::<String>(&conn, "SELECT id FROM events ORDER BY seq"), ["a", "b", "c", "d"]);
    let deliveries: i64 = conn.query_row("SELECT count(*) FROM deliveries", [], |r| r.get(0)).unwrap();
    assert_eq!(deliveries, 4);
}

/// After a failed commit the store is not ready until a commit succeeds; an idle store gets
/// one from `ping` itself, a second after the failure (the disk-full test in tests/it/faults.rs
/// shows the rest from outside).
#[tokio::test]
async fn ping_tries_a_commit_of_its_own_a_second_after_one_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db"), crate::clock::system()).await.unwrap();
    store.ping().await.unwrap();
    store.health.committed(Verdict::CannotWrite("disk full".into()));
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::NotReady { reason: Unready::CommitFailing, .. }), "{err}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    store.ping().await.unwrap();
    store.ping().await.unwrap();
}

/// Only a synced commit clears a failed one: a claim commits without an fsync, and on a full disk
/// it can succeed where an event cannot.
#[tokio::test]
async fn only_a_synced_commit_says_commits_work_again() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::clock::system();
    let store = SqliteStore::open(&dir.path().join("t.db"), clock.clone()).await.unwrap();
    store.write(|a| Job::Enqueue(row("a", "1"), a)).await.unwrap();
    store.health.committed(Verdict::CannotWrite("disk full".into()));
    let want = Want { destination: "d".into(), max: 1, lease: Duration::from_secs(30), rate: None };
    let claimed = store.claim(&ClaimRequest { total: 1, wants: vec![want] }, clock.now()).await.unwrap();
    assert_eq!(claimed.len(), 1, "the claim wrote");
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::NotReady { reason: Unready::CommitFailing, .. }), "{err}");
    store.write(|a| Job::Enqueue(row("b", "2"), a)).await.unwrap();
    store.ping().await.unwrap();
}

/// `/metrics` counts deliveries at every scrape: no count by status may scan the table.
#[test]
fn every_status_count_uses_an_index() {
    let conn = Connection::open_in_memory().unwrap();
    migrate(&conn).unwrap();
    let plan =
        |sql: &str| -> String { conn.query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3)).unwrap() };
    for sql in &COUNTS[..5] {
        assert!(plan(sql).contains("INDEX"), "{sql}: {}", plan(sql));
    }
    // Failed ones on their own index: on the due index, which holds no status, each row was read.
    assert!(plan(COUNTS[1]).contains("deliveries_failed"), "{}", plan(COUNTS[1]));
}

/// The first column of every row `sql` returns.
fn column<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    conn.prepare(sql).unwrap().query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

fn plan(conn: &Connection, sql: &str) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(3)).unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
}

/// Claims walk an index in its order: with no LIMIT, a sort would read every due delivery.
#[test]
fn claims_walk_an_index_in_order() {
    let conn = Connection::open_in_memory().unwrap();
    migrate(&conn).unwrap();
    for sql in [CLAIM_EXPIRED, CLAIM_DUE] {
        let plan = plan(&conn, &sql.replace("?1", "'d'").replace("?2", "0"));
        assert!(plan.contains("USING INDEX") && !plan.contains("TEMP B-TREE"), "{sql}: {plan}");
    }
}

/// An event's deliveries are a range of the deliveries' own key: finding them scans nothing.
#[test]
fn deliveries_of_an_event_are_found_by_key_range() {
    let conn = Connection::open_in_memory().unwrap();
    migrate(&conn).unwrap();
    assert_eq!(
        deliveries_of_e!(),
        format!("d.id BETWEEN e.seq * {DELIVERY_SLOTS} AND e.seq * {DELIVERY_SLOTS} + {}", DELIVERY_SLOTS - 1)
    );
    let status = plan(&conn, &format!("SELECT {EVENT_STATUS} FROM events e WHERE e.seq = 7"));
    assert!(!status.contains("SCAN"), "{status}");
    let by_event = plan(&conn, "SELECT * FROM deliveries WHERE id BETWEEN 7168 AND 8191");
    assert!(by_event.contains("PRIMARY KEY"), "{by_event}");
}

/// A database at schema version 2 (sequential delivery ids, two more indexes) is migrated to the newest:
/// every delivery gets its derived id, every attempt follows its delivery, the indexes go.
#[test]
fn version_2_databases_get_derived_delivery_ids() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(MIGRATIONS[0]).unwrap();
    conn.execute_batch(MIGRATIONS[1]).unwrap();
    conn.execute_batch(
        "INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body) VALUES
             (1, 'a', 's', '1', 10, '{}', x''), (2, 'b', 's', '2', 20, '{}', x''), (5, 'c', 's', '3', 30, '{}', x'');
         INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at) VALUES
             (1, 1, 'x', 'succeeded', 0, 0), (2, 1, 'y', 'dead', 0, 0), (3, 2, 'x', 'pending', 0, 0), (4, 5, 'y', 'failed', 0, 0);
         INSERT INTO attempts (delivery_id, attempt, at, outcome, duration_ms) VALUES
             (1, 1, 0, 'ok', 0), (2, 1, 0, 'http_500', 0), (2, 2, 0, 'http_500', 0), (4, 1, 0, 'timeout', 0);",
    )
    .unwrap();
    migrate(&conn).unwrap();
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, MIGRATIONS.len() as i64);
    let ids = |sql: &str| -> Vec<(i64, String)> {
        conn.prepare(sql).unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(
        ids("SELECT id, destination || ':' || status FROM deliveries ORDER BY id"),
        [(1024, "x:succeeded".into()), (1025, "y:dead".into()), (2048, "x:pending".into()), (5120, "y:failed".into())]
    );
    assert_eq!(
        ids("SELECT delivery_id, outcome FROM attempts ORDER BY delivery_id, attempt"),
        [(1024, "ok".into()), (1025, "http_500".into()), (1025, "http_500".into()), (5120, "timeout".into())]
    );
    assert_eq!(
        column::<String>(
            &conn,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ),
        [
            "attempts_delivery",
            "deliveries_dead",
            "deliveries_due",
            "deliveries_failed",
            "deliveries_filtered",
            "deliveries_lease",
            "deliveries_ordered"
        ]
    );
    // Applied once: opening again changes nothing.
    migrate(&conn).unwrap();
    conn.execute(&format!("PRAGMA user_version = {}", MIGRATIONS.len() + 1), []).unwrap();
    let newer = migrate(&conn).unwrap_err().to_string();
    assert!(newer.contains("newer than this hookgate knows"), "{newer}");
}

/// An event is never stored as received before the one stored ahead of it, across restarts too.
#[test]
fn received_at_never_decreases_with_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    migrate(&conn).unwrap();
    let at = |id: &str, key: &str, received_at: Millis| job(EventRow { received_at, ..row(id, key) });
    let time = BatchTime::starting_at(&conn).unwrap();
    run_batch(&mut conn, &mut [at("a", "1", 100), at("b", "2", 90), at("c", "3", 120)], &time);
    let time = BatchTime::starting_at(&conn).unwrap(); // as after a restart
    run_batch(&mut conn, &mut [at("d", "4", 110)], &time);
    assert_eq!(column::<i64>(&conn, "SELECT received_at FROM events ORDER BY seq"), [100, 100, 120, 120]);
}

/// The binary search finds the same split as a scan, with gaps in seq and equal times.
#[test]
fn first_seq_at_splits_events_by_time() {
    let conn = Connection::open_in_memory().unwrap();
    migrate(&conn).unwrap();
    assert_eq!(first_seq_at(&conn, 5).unwrap(), None);
    let mut rows = Vec::new();
    let mut t = 100;
    for seq in (1..400).filter(|s| s % 7 != 3) {
        t += seq % 3; // steps of 0, 1 and 2 ms
        conn.execute(
            "INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body) VALUES (?1, ?1, 's', ?1, ?2, '{}', x'')",
            params![seq, t],
        )
        .unwrap();
        rows.push((seq, t));
    }
    for probe in 90..t + 3 {
        let expected = rows.iter().find(|(_, at)| *at >= probe).map_or(rows.last().unwrap().0 + 1, |(seq, _)| *seq);
        let found = first_seq_at(&conn, probe).unwrap().unwrap();
        // Any seq in the gap before the first match splits the same way.
        let before = rows.iter().filter(|(seq, _)| *seq < expected).map(|(seq, _)| *seq).max().unwrap_or(0);
        assert!(found > before && found <= expected, "t={probe}: found {found}, expected ({before}, {expected}]");
    }
}

/// The durability switch fails closed: when `PRAGMA synchronous = FULL` cannot be set, the jobs
/// that must be durable (events, replays) are answered unavailable before anything is written,
/// and the rest of the batch (claims, attempt records) goes on without an fsync.
#[test]
fn events_fail_when_commits_cannot_be_made_durable() {
    let (event, answer) = enqueue(row("a", "1"));
    let (tx, mut claimed) = oneshot::channel();
    let claim =
        Job::Claim { request: ClaimRequest::default(), now: 0, answer: Answer::new(tx), park: None, rooms: Vec::new() };
    let mut batch = vec![event, claim];
    let mut current = Durability::Off;
    let refuse = |_| Err(rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(10), Some("disk I/O error".into())));
    switch_durability(&mut batch, &mut current, Durability::Full, refuse);
    assert_eq!(current, Durability::Off);
    assert!(matches!(batch[..], [Job::Claim { .. }]));
    let refused = answer.blocking_recv().unwrap().unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)) && refused.to_string().contains("durable"), "{refused}");
    assert!(claimed.try_recv().is_err(), "the claim is still to run");
    // Relaxing to OFF may fail: the batch only pays an fsync it did not need.
    let mut current = Durability::Full;
    switch_durability(&mut batch, &mut current, Durability::Off, refuse);
    assert_eq!((current, batch.len()), (Durability::Full, 1));
    // And when FULL can be set, nothing is refused.
    let mut batch = vec![job(row("b", "2"))];
    let mut current = Durability::Off;
    switch_durability(&mut batch, &mut current, Durability::Full, |_| Ok(()));
    assert_eq!((current, batch.len()), (Durability::Full, 1));
}

/// `close` writes what is queued and releases the file at once: the same process opens it again
/// without waiting for the lock (an open of a locked file waits up to a second, then fails).
#[tokio::test]
async fn close_releases_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let clock = crate::clock::system();
    let store = SqliteStore::open(&path, clock.clone()).await.unwrap();
    store.close().await;
    store.close().await; // idempotent
    assert!(store.ping().await.is_err(), "closed");
    assert!(store.readers.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await.is_err());
    let started = std::time::Instant::now();
    let again = SqliteStore::open(&path, clock).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(500), "waited {:?} for the lock", started.elapsed());
    again.ping().await.unwrap();
    drop(store);
    again.close().await;
}

/// The schema refuses a status the code does not know, as PostgreSQL's does, and keeps every row
/// and index across the rebuild that adds the check.
#[test]
fn unknown_delivery_statuses_are_refused() {
    let conn = Connection::open_in_memory().unwrap();
    for sql in &MIGRATIONS[..4] {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(
        "INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at) VALUES (1024, 1, 'x', 'failed', 5, 0);
         PRAGMA user_version = 4;",
    )
    .unwrap();
    migrate(&conn).unwrap();
    assert_eq!(column::<String>(&conn, "SELECT destination || ':' || status FROM deliveries"), ["x:failed"]);
    let insert = |status: &str| {
        conn.execute(
            "INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at) VALUES (2048, 2, 'x', ?1, 0, 0)",
            [status],
        )
    };
    let refused = insert("retrying").unwrap_err().to_string();
    assert!(refused.contains("CHECK"), "{refused}");
    for status in DeliveryStatus::NAMES {
        insert(status).unwrap();
        conn.execute("DELETE FROM deliveries WHERE id = 2048", []).unwrap();
    }
}

/// Runs `rows` as batches of 10 enqueues, merging dedupe keys after each as the writer does;
/// the answers in order.
fn enqueue_all(conn: &mut Connection, time: &mut BatchTime, rows: Vec<EventRow>) -> Vec<Enqueued> {
    let mut answers = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let (mut batch, rxs): (Vec<Job>, Vec<_>) = rows.by_ref().take(10).map(enqueue).unzip();
        let (results, _, _) = run_batch(conn, &mut batch, time);
        for (job, result) in batch.into_iter().zip(results) {
            job.finish(result);
        }
        answers.extend(rxs.into_iter().map(|mut rx| rx.try_recv().unwrap().unwrap()));
        while time.tail.get_mut().has_work() {
            time.tail.get_mut().work_some(conn).unwrap();
        }
    }
    answers
}

/// A duplicate is found whether its original's key is still in the writer's memory, merged into
/// the `dedupe` table, or (after a restart) merged at open.
#[test]
fn dedupe_keys_are_found_in_memory_in_the_table_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let open = || {
        let conn = migrated(&path);
        dedupe::merge_unmerged(&conn).unwrap();
        conn
    };
    let n = dedupe::MERGE_AT * 3 + 7;
    let originals = |prefix: &str| (0..n).map(|i| row(&format!("{prefix}{i}"), &format!("k{i}"))).collect::<Vec<_>>();
    let is_original = |answers: &[Enqueued]| {
        answers
            .iter()
            .enumerate()
            .all(|(i, a)| matches!(a, Enqueued::Duplicate { event_id } if *event_id == format!("e{i}")))
    };
    let mut conn = open();
    let mut time = BatchTime::starting_at(&conn).unwrap();
    let first = enqueue_all(&mut conn, &mut time, originals("e"));
    assert!(first.iter().all(|a| matches!(a, Enqueued::Queued { .. })));
    let in_table: usize = conn.query_row("SELECT count(*) FROM dedupe", [], |r| r.get(0)).unwrap();
    let in_memory = time.tail.get_mut().len();
    assert!(in_table > 0 && in_memory > 0 && in_table + in_memory == n, "{in_table} merged, {in_memory} in memory");
    // Some originals in memory, most in the table; a second copy in the same batch too.
    assert!(is_original(&enqueue_all(&mut conn, &mut time, originals("x"))));
    let twice = enqueue_all(&mut conn, &mut time, vec![row("y1", "new"), row("y2", "new")]);
    assert!(matches!(&twice[1], Enqueued::Duplicate { event_id } if event_id == "y1"));
    drop(conn);
    // The memory is gone; the open merges what it held.
    let mut conn = open();
    let merged: i64 = conn.query_row("SELECT seq FROM dedupe_merged", [], |r| r.get(0)).unwrap();
    let last: i64 = conn.query_row("SELECT max(seq) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(merged, last);
    let mut time = BatchTime::starting_at(&conn).unwrap();
    assert!(is_original(&enqueue_all(&mut conn, &mut time, originals("z"))));
    let stored: usize = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, n + 1);
}

/// The filter of stored keys fills and grows (from the table, a range at a time) as keys come:
/// nothing is missed meanwhile.
#[test]
fn a_full_dedupe_filter_misses_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = migrated(&dir.path().join("t.db"));
    let mut time = BatchTime::starting_at(&conn).unwrap();
    // Past the test filter's room (a few hundred keys), merged into the table as they come.
    let rows = |prefix: &str| (0..2000).map(|i| row(&format!("{prefix}{i}"), &format!("k{i}"))).collect::<Vec<_>>();
    assert!(enqueue_all(&mut conn, &mut time, rows("e")).iter().all(|a| matches!(a, Enqueued::Queued { .. })));
    let again = enqueue_all(&mut conn, &mut time, rows("x"));
    let originals = again
        .iter()
        .enumerate()
        .filter(|(i, a)| matches!(a, Enqueued::Duplicate { event_id } if *event_id == format!("e{i}")))
        .count();
    assert_eq!(originals, 2000);
}

/// A key added by a job whose savepoint was rolled back is forgotten: its seq goes to the next event.
#[test]
fn a_rolled_back_event_leaves_no_dedupe_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = migrated(&dir.path().join("t.db"));
    let mut time = BatchTime::default();
    enqueue_all(&mut conn, &mut time, vec![row("a", "1")]);
    // "a" again under key 2 fails on the id; key 2 must then be free.
    let answers = {
        let mut batch: Vec<Job> = [row("b", "3"), row("a", "2")].into_iter().map(job).collect();
        run_batch(&mut conn, &mut batch, &time).0
    };
    assert!(answers[0].is_ok() && answers[1].is_err());
    let again = enqueue_all(&mut conn, &mut time, vec![row("c", "2"), row("d", "3")]);
    assert!(matches!(&again[0], Enqueued::Queued { event_id } if event_id == "c"));
    assert!(matches!(&again[1], Enqueued::Duplicate { event_id } if event_id == "b"));
}

/// A database of schema version 8 (dedupe by a UNIQUE index on the events) keeps its events' keys:
/// the upgrade rebuilds the events table and the open merges every key.
#[test]
fn events_stored_before_version_9_keep_their_dedupe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure(&conn).unwrap();
    for (i, sql) in MIGRATIONS[..8].iter().enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", i + 1).unwrap();
    }
    conn.execute_batch(
        "INSERT INTO events (seq, id, source, dedupe_key, received_at, headers, body, path) VALUES
             (1, 'a', 's', '1', 0, '{}', x'', '/s'), (2, 'b', 's', '2', 0, '{}', x'', '/s');",
    )
    .unwrap();
    migrate(&conn).unwrap();
    dedupe::merge_unmerged(&conn).unwrap();
    let answers = enqueue_all(&mut conn, &mut BatchTime::default(), vec![row("c", "1"), row("d", "2"), row("e", "3")]);
    let duplicate = |a: &Enqueued, id: &str| matches!(a, Enqueued::Duplicate { event_id } if event_id == id);
    assert!(duplicate(&answers[0], "a") && duplicate(&answers[1], "b"), "{answers:?}");
    assert!(matches!(&answers[2], Enqueued::Queued { event_id } if event_id == "e"));
    assert_eq!(column::<String>(&conn, "SELECT id FROM events ORDER BY seq"), ["a", "b", "e"]);
}

/// Version 12 rebuilds the deliveries table with its checks written as ORs: every column of every
/// delivery is kept, and the status check refuses what it refused before.
#[test]
fn version_12_keeps_every_delivery_and_still_refuses_an_unknown_status() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(dir.path().join("t.db")).unwrap();
    configure(&conn).unwrap();
    for (i, sql) in MIGRATIONS[..11].iter().enumerate() {
        conn.execute_batch(sql).unwrap();
        conn.pragma_update(None, "user_version", i + 1).unwrap();
    }
    let all = "SELECT id || ',' || event_seq || ',' || destination || ',' || status || ',' || attempts || ',' ||
                      next_attempt_at || ',' || ifnull(lease_until, '-') || ',' || ifnull(claim, '-') || ',' ||
                      ifnull(last_error, '-') || ',' || updated_at || ',' || ifnull(ordering_key, '-')
               FROM deliveries ORDER BY id";
    conn.execute_batch(
        "INSERT INTO deliveries (id, event_seq, destination, status, attempts, next_attempt_at, lease_until, claim,
                                 last_error, updated_at, ordering_key) VALUES
             (1024, 1, 'x', 'in_flight', 2, 5, 9, 77, 'HTTP 500', 4, 'customer-1'),
             (1025, 1, 'y', 'filtered', 0, 5, NULL, NULL, 'filter', 4, NULL),
             (2048, 2, 'x', 'pending', 0, 6, NULL, NULL, NULL, 6, 'customer-1');",
    )
    .unwrap();
    let before = column::<String>(&conn, all);
    migrate(&conn).unwrap();
    assert_eq!(column::<String>(&conn, all), before);
    let unknown = conn.execute(
        "INSERT INTO deliveries (id, event_seq, destination, status, next_attempt_at, updated_at)
         VALUES (3072, 3, 'x', 'lost', 0, 0)",
        [],
    );
    assert!(unknown.unwrap_err().to_string().contains("CHECK constraint failed"));
    let sql: String =
        conn.query_row("SELECT sql FROM sqlite_master WHERE name = 'deliveries'", [], |r| r.get(0)).unwrap();
    assert!(!sql.contains(" IN ("), "{sql}");
}

/// A claim of `d`, parked as `id` if it finds nothing (`handoff.rs`), waiting in a task.
fn park(store: &Arc<SqliteStore>, park: &Park) -> tokio::task::JoinHandle<Result<Vec<Claimed>, StoreError>> {
    let (store, park) = (store.clone(), park.clone());
    tokio::spawn(async move {
        let want = Want { destination: "d".into(), max: 5, lease: Duration::from_secs(30), rate: None };
        store.claim_or_park(&ClaimRequest { total: 5, wants: vec![want] }, crate::clock::system().now(), &park).await
    })
}

/// Waits for the writer to have run every job sent before this (a probe commits after them).
async fn writer_caught_up(store: &SqliteStore) {
    store.write(Job::Probe).await.unwrap();
}

/// A parked claim is handed a new event's delivery, inserted already claimed (in flight, its
/// first attempt, the claim's token), in the event's own commit; the queue never saw it.
#[tokio::test]
async fn a_parked_claim_is_handed_a_new_delivery_already_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), crate::clock::system()).await.unwrap());
    let p1 = Park::new();
    let parked = park(&store, &p1);
    tokio::task::yield_now().await;
    writer_caught_up(&store).await;
    assert!(!parked.is_finished(), "a claim that found nothing waits");
    let Enqueued::Queued { event_id } = store.write(|a| Job::Enqueue(row("a", "1"), a)).await.unwrap() else {
        panic!("queued")
    };
    let handed = parked.await.unwrap().unwrap();
    assert_eq!(handed.len(), 1);
    let c = &handed[0];
    assert_eq!(
        (c.event_id.as_str(), c.destination.as_str(), c.attempt, &c.body[..]),
        (event_id.as_str(), "d", 1, &b"{}"[..])
    );
    let held = store.held(c.delivery_id).await.unwrap().unwrap();
    assert_eq!((held.status, held.attempts, held.claim), (DeliveryStatus::InFlight, 1, Some(c.claim)));
    assert!(
        store
            .claim(&ClaimRequest::each(5, &["d"], Duration::from_secs(30)), crate::clock::system().now())
            .await
            .unwrap()
            .is_empty()
    );
    let record = AttemptRecord {
        delivery_id: c.delivery_id,
        claim: c.claim,
        attempt: 1,
        at: 0,
        outcome: Outcome::Success,
        status_code: Some(200),
        exit_code: None,
        error: None,
        duration_ms: 1,
        next: NextState::Succeeded,
    };
    assert!(store.record(record).await.unwrap());
    assert_eq!(store.held(c.delivery_id).await.unwrap().unwrap().status, DeliveryStatus::Succeeded);
}

/// What a parked claim is not handed: a keyed delivery (left pending, in the queue's order), a
/// paused destination's (the pause answers the claim with nothing), an event that was rolled
/// back; and the loop takes a parked claim back with `unpark`, even one that reaches the writer
/// after it.
#[tokio::test]
async fn a_parked_claim_takes_only_what_a_claim_would_and_answers_when_taken_back_or_gated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), crate::clock::system()).await.unwrap());
    let (p1, p2, p3) = (Park::new(), Park::new(), Park::new());
    let parked = park(&store, &p1);
    tokio::task::yield_now().await;
    writer_caught_up(&store).await;
    let keyed = EventRow { deliveries: vec![("d".into(), None, Some("k".into()))], ..row("a", "1") };
    store.write(|a| Job::Enqueue(keyed, a)).await.unwrap();
    // The same id under a new key fails (UNIQUE): its delivery is rolled back with it.
    store.write(|a| Job::Enqueue(row("a", "2"), a)).await.unwrap_err();
    writer_caught_up(&store).await;
    assert!(!parked.is_finished(), "neither was handed");
    store.unpark(&p1).await;
    assert!(parked.await.unwrap().unwrap().is_empty());
    let any = ClaimRequest::each(5, &["d"], Duration::from_secs(30));
    assert_eq!(store.claim(&any, crate::clock::system().now()).await.unwrap().len(), 1, "the keyed one is queued");

    let parked = park(&store, &p2);
    tokio::task::yield_now().await;
    writer_caught_up(&store).await;
    store.set_paused("d", true).await.unwrap();
    assert!(parked.await.unwrap().unwrap().is_empty(), "a pause answers the parked claim");
    let parked = park(&store, &p3);
    tokio::task::yield_now().await;
    writer_caught_up(&store).await;
    assert!(parked.await.unwrap().unwrap().is_empty(), "a paused destination's claim does not park");
    // Taken back before it reached the writer: it does not park.
    let p4 = Park::new();
    store.unpark(&p4).await;
    store.set_paused("d", false).await.unwrap();
    assert!(park(&store, &p4).await.unwrap().unwrap().is_empty());
    store.close().await;
}

//! Enqueue throughput of each store: many concurrent callers, as many ingest requests would be.
//!
//!     cargo bench --bench enqueue -- [--events N] [--concurrency C] [--destinations D] [--postgres URL]
//!
//! Without `--postgres` it measures SQLite in a temp dir; with it, PostgreSQL in a fresh schema
//! that is dropped afterwards. Release build, durable commits (SQLite synchronous=FULL,
//! PostgreSQL synchronous_commit as configured on the server).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use hookgate::store::postgres::PostgresStore;
use hookgate::store::sqlite::SqliteStore;
use hookgate::store::{NewEvent, Planned, Store, new_event_id};
use hookgate::verify::{Unverified, Verifier};

struct Args {
    events: usize,
    concurrency: usize,
    destinations: usize,
    postgres: Option<String>,
    pool_size: u32,
}

fn args() -> Args {
    let mut a = Args { events: 20_000, concurrency: 256, destinations: 2, postgres: None, pool_size: 16 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value().parse().expect("--events N"),
            "--concurrency" => a.concurrency = value().parse().expect("--concurrency C"),
            "--destinations" => a.destinations = value().parse().expect("--destinations D"),
            "--pool-size" => a.pool_size = value().parse().expect("--pool-size P"),
            "--postgres" => a.postgres = Some(value()),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let (name, store, cleanup): (&str, Arc<dyn Store>, Option<(tokio_postgres::Client, String)>) = match &a.postgres {
        None => (
            "sqlite",
            Arc::new(SqliteStore::open(&dir.path().join("bench.db"), hookgate::clock::system()).await.expect("sqlite")),
            None,
        ),
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            let schema = format!("hookgate_bench_{}", std::process::id());
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"))
                .await
                .expect("schema");
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = format!("{url}{sep}options=-csearch_path%3D{schema}");
            let store = PostgresStore::open(&url, a.pool_size, hookgate::clock::system()).await.expect("postgres");
            ("postgres", Arc::new(store), Some((client, schema)))
        }
    };
    let destinations: Arc<Vec<String>> = Arc::new((0..a.destinations).map(|i| format!("d{i}")).collect());
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (store, destinations, next, body) = (store.clone(), destinations.clone(), next.clone(), body.clone());
        let events = a.events;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= events {
                    return latencies;
                }
                let verified =
                    Unverified { path_and_query: "/".into(), headers: Default::default(), body: body.clone().into() }
                        .verify(&Verifier::insecure(), SystemTime::now())
                        .expect("insecure verifier accepts");
                let t = Instant::now();
                store
                    .enqueue(NewEvent {
                        id: new_event_id(),
                        verified: &verified,
                        source: "bench",
                        dedupe_key: format!("k{i}"),
                        content_type: Some("application/json".into()),
                        headers_json: "{\"content-type\":\"application/json\"}".into(),
                        deliveries: Planned::each(&destinations),
                        received_at: SystemTime::now(),
                        traceparent: None,
                    })
                    .await
                    .expect("enqueue");
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{name}: {} events ({} destinations each, ~1 KiB body), {} concurrent callers: {:.0} events/s, \
         latency p50 {:?} p99 {:?}",
        a.events,
        a.destinations,
        a.concurrency,
        a.events as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    );
    drop(store);
    if let Some((client, schema)) = cleanup {
        let _ = client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await;
    }
}

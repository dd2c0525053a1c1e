//! The NATS ceiling for bench/brokers.sh: JetStream publishes of ~1 KiB bodies with the headers a
//! hookgate `nats` destination sends (`webhook-id`, `webhook-timestamp`, `Content-Type` and a
//! distinct `Nats-Msg-Id` each), CONCURRENCY in flight on CONNECTIONS clients, each awaiting its ack, and
//! nothing else: no store, no claims, no attempt records. Its rate is what any producer on this
//! machine can reach against this broker, so it bounds the `nats` destination's rate.
//! usage: natspub URL SUBJECT COUNT [CONCURRENCY=64] [CONNECTIONS=1]   (prints `published=N secs=S rate=R`; the
//! connect time and a first lone publish's ack time on stderr)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (url, subject) = (args[1].clone(), args[2].clone());
    let count: u64 = args[3].parse().expect("COUNT");
    let concurrency: usize = args.get(4).map_or(64, |c| c.parse().expect("CONCURRENCY"));
    let connections: usize = args.get(5).map_or(1, |c| c.parse().expect("CONNECTIONS"));
    let t = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(async_nats::jetstream::new(async_nats::connect(&url).await.expect("connect")));
    }
    let js = clients[0].clone();
    let connected = t.elapsed();
    let first = js.publish(subject.clone(), Bytes::from_static(b"{}")).await.expect("publish");
    first.await.expect("ack");
    // To stderr: how long a connection and a lone publish take, apart from the rate.
    eprintln!("connect {connected:?}, first ack {:?}", t.elapsed() - connected);
    let body = Bytes::from(format!("{{\"type\":\"bench\",\"data\":\"{}\"}}", "x".repeat(1000)));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..concurrency {
        let js = clients[i % connections].clone();
        let (next, body, subject) = (next.clone(), body.clone(), subject.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return;
                }
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("webhook-id", format!("evt_{n:016x}").as_str());
                headers.insert("webhook-timestamp", "1764800000");
                headers.insert("Content-Type", "application/json");
                headers.insert("Nats-Msg-Id", format!("evt_{n:016x}:bench").as_str());
                let ack = js.publish_with_headers(subject.clone(), headers, body.clone()).await.expect("publish");
                ack.await.expect("ack");
            }
        });
    }
    tasks.join_all().await;
    let secs = start.elapsed().as_secs_f64();
    println!("published={count} secs={secs:.3} rate={:.0}", count as f64 / secs);
}

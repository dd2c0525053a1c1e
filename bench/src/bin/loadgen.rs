//! A closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending signed JSON
//! bodies back to back, for a duration or a request count. Prints one JSON line of results.
//!
//! usage: loadgen URL [--connections 64] [--duration 10] [--requests N] [--body-size 1024]
//!                    [--secret S] [--header X-Signature] [--duplicate] [--start-id N] [--random-ids]
//!                    [--keys N]
//! --random-ids: event ids in no order (like GitHub's delivery GUIDs or Stripe's ids), not counting up.
//! --keys N: each body has `"customer": "c<k>"`, k = the request's number modulo N (for ordering keys).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct Opts {
    url: String,
    connections: usize,
    duration: Duration,
    requests: Option<u64>,
    body_size: usize,
    secret: String,
    header: String,
    duplicate: bool,
    random_ids: bool,
    start_id: u64,
    keys: Option<u64>,
}

fn opts() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        url: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        requests: None,
        body_size: 1024,
        secret: "bench-secret".into(),
        header: "x-signature".into(),
        duplicate: false,
        random_ids: false,
        start_id: 0,
        keys: None,
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("missing value");
        match a.as_str() {
            "--connections" => o.connections = val().parse().unwrap(),
            "--duration" => o.duration = Duration::from_secs_f64(val().parse().unwrap()),
            "--requests" => o.requests = Some(val().parse().unwrap()),
            "--body-size" => o.body_size = val().parse().unwrap(),
            "--secret" => o.secret = val(),
            "--header" => o.header = val(),
            "--duplicate" => o.duplicate = true,
            "--random-ids" => o.random_ids = true,
            "--start-id" => o.start_id = val().parse().unwrap(),
            "--keys" => o.keys = Some(val().parse().unwrap()),
            url => o.url = url.to_string(),
        }
    }
    o
}

/// A ~body_size JSON body with a distinct id and the send time (for end-to-end latency). With
/// `random`, the id is a bijective scramble of `id`: still distinct, in no order.
fn body(n: u64, size: usize, random: bool, keys: Option<u64>) -> Vec<u8> {
    let sent = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_micros();
    let id = if random { scramble(n) } else { n };
    let customer = keys.map(|k| format!(r#""customer":"c{}","#, n % k.max(1))).unwrap_or_default();
    let head = format!(r#"{{"id":"evt_{id:016x}","type":"bench.event",{customer}"sent_at_us":{sent},"pad":""#);
    let pad = size.saturating_sub(head.len() + 2);
    let mut b = head.into_bytes();
    b.extend(std::iter::repeat_n(b'x', pad));
    b.extend_from_slice(b"\"}");
    b
}

/// splitmix64's finalizer: a bijection on u64.
fn scramble(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

#[tokio::main]
async fn main() {
    let o = Arc::new(opts());
    let uri: hyper::Uri = o.url.parse().expect("URL");
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap_or(80));
    let path = uri.path().to_string();
    let next = Arc::new(AtomicU64::new(o.start_id));
    let limit = o.requests.map(|n| n + o.start_id);
    let deadline = Instant::now() + o.duration;
    let started = Instant::now();
    let fixed = Bytes::from(body(0, o.body_size, false, o.keys));
    let fixed_sig = sign(o.secret.as_bytes(), &fixed);
    let mut tasks = Vec::new();
    for _ in 0..o.connections {
        let (o, next, addr, path, fixed, fixed_sig) =
            (o.clone(), next.clone(), addr.clone(), path.clone(), fixed.clone(), fixed_sig.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut ok, mut errors, mut non200) = (0u64, 0u64, 0u64);
            let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            loop {
                let id = next.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| id >= l) || (limit.is_none() && Instant::now() >= deadline) {
                    break;
                }
                let (b, sig) = if o.duplicate {
                    (fixed.clone(), fixed_sig.clone())
                } else {
                    let b = Bytes::from(body(id, o.body_size, o.random_ids, o.keys));
                    let s = sign(o.secret.as_bytes(), &b);
                    (b, s)
                };
                let req = Request::post(&path)
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .header(&o.header, sig)
                    .body(Full::new(b))
                    .unwrap();
                if sender.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        hist.record(t.elapsed().as_micros().max(1) as u64).unwrap();
                        if status == 200 { ok += 1 } else { non200 += 1 }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (hist, ok, errors, non200)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let (mut ok, mut errors, mut non200) = (0, 0, 0);
    for t in tasks {
        let (h, a, b, c) = t.await.unwrap();
        hist.add(h).unwrap();
        ok += a;
        errors += b;
        non200 += c;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "ok": ok, "non_200": non200, "errors": errors, "seconds": secs,
            "rps": (ok + non200) as f64 / secs,
            "p50_ms": hist.value_at_quantile(0.5) as f64 / 1000.0,
            "p99_ms": hist.value_at_quantile(0.99) as f64 / 1000.0,
            "p999_ms": hist.value_at_quantile(0.999) as f64 / 1000.0,
        })
    );
}

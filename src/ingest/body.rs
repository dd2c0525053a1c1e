//! Reading a request body, bounded: in size (`max_body_bytes`, 413), in time (`request_timeout`
//! overall and `body_idle_timeout` between two pieces, 408) and, together with every other body
//! being read, in memory (`max_inflight_body_bytes`, 503): a declared `Content-Length` is
//! reserved before the first byte is read, a chunked body is counted as it arrives. One client
//! address holds at most its share of that budget, the share of the request slots it may hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::admission::ClientKey;
use super::error::IngestError;

/// The bytes of all bodies being received, at most `max`; of one client address's bodies, at
/// most `per_client` (so one address cannot hold the whole budget and keep everyone else at 503).
#[derive(Debug)]
pub struct Budget {
    max: usize,
    per_client: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    clients: HashMap<ClientKey, usize>,
}

impl Budget {
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Budget { max, per_client, held: Mutex::new(Held::default()) })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_add(&self, client: Option<ClientKey>, n: usize) -> bool {
        let mut held = self.held();
        let Some(total) = held.total.checked_add(n).filter(|t| *t <= self.max) else { return false };
        if let Some(key) = client {
            let mine = held.clients.get(&key).copied().unwrap_or(0);
            let Some(mine) = mine.checked_add(n).filter(|m| *m <= self.per_client) else { return false };
            held.clients.insert(key, mine);
        }
        held.total = total;
        true
    }

    fn give_back(&self, client: Option<ClientKey>, n: usize) {
        let mut held = self.held();
        held.total -= n;
        if let Some(key) = client
            && let Some(mine) = held.clients.get_mut(&key)
        {
            *mine -= n;
            if *mine == 0 {
                held.clients.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.held().total
    }
}

/// Bytes of the budget held by one body, given back when dropped (after the event is stored or
/// refused, when the body's bytes are gone too).
#[derive(Debug)]
pub struct Reserved {
    budget: Arc<Budget>,
    client: Option<ClientKey>,
    bytes: usize,
}

impl Reserved {
    fn new(budget: &Arc<Budget>, client: Option<ClientKey>, bytes: usize) -> Option<Self> {
        budget.try_add(client, bytes).then(|| Reserved { budget: budget.clone(), client, bytes })
    }

    /// Makes the reservation at least `total` bytes; false if the budget has no room.
    fn cover(&mut self, total: usize) -> bool {
        if total <= self.bytes {
            return true;
        }
        let ok = self.budget.try_add(self.client, total - self.bytes);
        if ok {
            self.bytes = total;
        }
        ok
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.budget.give_back(self.client, self.bytes);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    /// From the first poll of the body to its end.
    pub total: Duration,
    /// Between two pieces of it.
    pub idle: Duration,
}

/// The whole body, with the reservation that must live as long as its bytes. `declared` is the
/// request's `Content-Length`, if any (hyper delivers exactly that many bytes or fails).
pub async fn read(
    mut body: Body,
    declared: Option<u64>,
    limits: Limits,
    budget: &Arc<Budget>,
    client: Option<ClientKey>,
) -> Result<(Bytes, Reserved), IngestError> {
    let declared = match declared.map(usize::try_from) {
        Some(Ok(n)) if n <= limits.max_bytes => Some(n),
        Some(_) => return Err(IngestError::TooLarge),
        None => None,
    };
    let mut reserved = Reserved::new(budget, client, declared.unwrap_or(0)).ok_or(IngestError::Busy)?;
    let deadline = tokio::time::Instant::now() + limits.total;
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0));
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = match tokio::time::timeout(limits.idle.min(left), body.frame()).await {
            Err(_) => return Err(IngestError::BodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(IngestError::BadBody(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue }; // trailers
        let total = buf.len() + data.len();
        if total > limits.max_bytes {
            return Err(IngestError::TooLarge);
        }
        if !reserved.cover(total) {
            return Err(IngestError::Busy);
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), reserved))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    const LIMITS: Limits = Limits { max_bytes: 100, total: Duration::from_secs(10), idle: Duration::from_secs(1) };

    fn chunks(parts: &[&'static [u8]]) -> Body {
        let parts: Vec<Result<Bytes, std::io::Error>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(parts))
    }

    fn client(ip: &str) -> Option<ClientKey> {
        Some(ClientKey::new(ip.parse().unwrap()))
    }

    #[tokio::test]
    async fn reserves_what_is_declared_counts_what_arrives_and_gives_it_back() {
        let budget = Budget::new(150, 150);
        let (first, held) = read(Body::from("x".repeat(60)), Some(60), LIMITS, &budget, None).await.unwrap();
        assert_eq!((first.len(), budget.used()), (60, 60));
        let full = read(Body::from("y".repeat(100)), Some(100), LIMITS, &budget, None).await;
        assert!(matches!(full, Err(IngestError::Busy)));
        // Chunked: counted piece by piece, refused when a piece does not fit.
        let (second, held2) = read(chunks(&[b"abc", b"def"]), None, LIMITS, &budget, None).await.unwrap();
        assert_eq!((&second[..], budget.used()), (&b"abcdef"[..], 66));
        let big: &'static [u8] = &[b'z'; 90];
        assert!(matches!(read(chunks(&[b"ok", big]), None, LIMITS, &budget, None).await, Err(IngestError::Busy)));
        assert_eq!(budget.used(), 66, "a refused body gives its bytes back");
        drop((first, held, second, held2));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn one_client_holds_at_most_its_share() {
        let budget = Budget::new(200, 100);
        let a = client("127.0.0.2");
        let (_b1, r1) = read(Body::from("x".repeat(80)), Some(80), LIMITS, &budget, a).await.unwrap();
        let over = read(Body::from("x".repeat(30)), Some(30), LIMITS, &budget, a).await;
        assert!(matches!(over, Err(IngestError::Busy)), "past its share");
        let (_b2, r2) = read(Body::from("x".repeat(90)), Some(90), LIMITS, &budget, client("127.0.0.1")).await.unwrap();
        assert_eq!(budget.used(), 170);
        drop((r1, r2));
        assert_eq!(budget.used(), 0);
        assert!(budget.held().clients.is_empty());
    }

    #[tokio::test]
    async fn too_large_declared_or_received() {
        let budget = Budget::new(1000, 1000);
        let declared = read(Body::from("x"), Some(101), LIMITS, &budget, None).await;
        assert!(matches!(declared, Err(IngestError::TooLarge)));
        let big: &'static [u8] = &[b'z'; 60];
        assert!(matches!(read(chunks(&[big, big]), None, LIMITS, &budget, None).await, Err(IngestError::TooLarge)));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_off_at_the_idle_timeout_and_a_slow_one_at_the_total() {
        let budget = Budget::new(1000, 1000);
        // A piece every 900 ms keeps under the idle timeout (1 s) but not under the total (10 s).
        let slow = futures::stream::unfold(0, |n| async move {
            tokio::time::sleep(Duration::from_millis(900)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"a")), n + 1))
        });
        let started = tokio::time::Instant::now();
        assert!(matches!(
            read(Body::from_stream(slow), None, LIMITS, &budget, None).await,
            Err(IngestError::BodyTimeout)
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let stalled = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"a")) })
            .chain(futures::stream::pending());
        let started = tokio::time::Instant::now();
        assert!(matches!(
            read(Body::from_stream(stalled), None, LIMITS, &budget, None).await,
            Err(IngestError::BodyTimeout)
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}

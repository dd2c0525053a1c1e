//! Who gets one of the `[server] max_concurrent_requests` slots. A client address holds at most
//! `max_requests_per_client` of them (requests waiting for a slot count too), so one client
//! trickling bodies cannot take them all; and nobody waits longer than `queue_timeout`.
//!
//! The client is the peer address of the socket, never `X-Forwarded-For` (anyone can write
//! that); IPv6 addresses count by their /64, which one host usually has to itself. Behind a proxy
//! every request has the proxy's address: see docs/RELIABILITY.md.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A client address as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn new(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let mut octets = v6.octets();
                    octets[8..].fill(0);
                    ClientKey(IpAddr::from(octets))
                }
            },
            v4 => ClientKey(v4),
        }
    }

    /// The client of a request that came through `server::serve`; None for requests made in
    /// process (`Router::oneshot` in tests and the fuzz harness), which no per-client limit applies to.
    pub fn of(req: &Request) -> Option<Self> {
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| ClientKey::new(peer.ip()))
    }
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its client already has `max_requests_per_client` requests in progress or waiting.
    Client,
    /// No slot came free within `queue_timeout`.
    Busy,
}

#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    clients: Mutex<HashMap<ClientKey, usize>>,
    per_client: usize,
    wait: Duration,
}

/// A slot, held until dropped.
#[derive(Debug)]
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _client: Option<Counted>,
}

/// One request counted against its client, until dropped.
#[derive(Debug)]
struct Counted {
    admission: Arc<Admission>,
    key: ClientKey,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut clients = self.admission.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = clients.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.key);
            }
        }
    }
}

impl Admission {
    pub fn new(slots: usize, per_client: usize, wait: Duration) -> Arc<Self> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(slots)),
            clients: Mutex::new(HashMap::new()),
            per_client,
            wait,
        })
    }

    /// A slot for a request of `client`, or why not.
    pub async fn admit(self: &Arc<Self>, client: Option<ClientKey>) -> Result<Admitted, Refused> {
        let counted = match client {
            None => None,
            Some(key) => {
                let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
                let n = clients.entry(key).or_insert(0);
                if *n >= self.per_client {
                    return Err(Refused::Client);
                }
                *n += 1;
                Some(Counted { admission: self.clone(), key })
            }
        };
        // Dropping `counted` on the way out (a refusal, or the request given up) uncounts it.
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(Admitted { _slot: slot, _client: counted }),
            // The semaphore is never closed; a closed one would mean no slot, like a timeout.
            Ok(Err(_)) | Err(_) => Err(Refused::Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> Option<ClientKey> {
        Some(ClientKey::new(ip.parse().unwrap()))
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_holds_at_most_its_share_and_nobody_waits_past_the_timeout() {
        let a = Admission::new(3, 2, Duration::from_millis(100));
        let first = a.admit(key("127.0.0.2")).await.unwrap();
        let second = a.admit(key("127.0.0.2")).await.unwrap();
        assert_eq!(a.admit(key("127.0.0.2")).await.unwrap_err(), Refused::Client);
        let other = a.admit(key("127.0.0.1")).await.unwrap();
        // Every slot is taken: a newcomer waits, then is told the server is busy.
        let started = tokio::time::Instant::now();
        assert_eq!(a.admit(key("127.0.0.3")).await.unwrap_err(), Refused::Busy);
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(a.admit(None).await.unwrap_err(), Refused::Busy, "in-process requests wait for a slot too");
        drop(first);
        let again = a.admit(key("127.0.0.2")).await.unwrap();
        drop((second, other, again));
        assert!(a.clients.lock().unwrap().is_empty(), "a client with nothing in progress is forgotten");
    }
}

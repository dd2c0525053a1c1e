//! `redis`: `XADD stream [MAXLEN maxlen] * event_id .. source .. content_type .. body ..` (the
//! `redis` crate); the entry id in the reply is the success. The fields also hold `attempt` and
//! `webhook_timestamp`, the facts an http destination sends as headers. `maxlen` trims exactly
//! (not `~`): the stream never holds more than that, at webhook rates the cost is nil
//! (docs/BROKERS.md). One multiplexed connection per destination (a `ConnectionManager`, which
//! reconnects by itself once it has connected).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::link::Link;
use super::{Failure, Meta, attempt, cause};
use crate::clock::SharedClock;
use crate::config::Template;
use crate::destination::{Attempt, AttemptResult, Deliver};
use crate::secret::Secret;

pub struct RedisDestination {
    url: Secret,
    stream: Template,
    maxlen: Option<u64>,
    timeout: Duration,
    clock: SharedClock,
    link: Link<ConnectionManager>,
}

impl RedisDestination {
    pub fn new(url: Secret, stream: Template, maxlen: Option<u64>, timeout: Duration, clock: SharedClock) -> Self {
        RedisDestination { url, stream, maxlen, timeout, clock, link: Link::default() }
    }

    async fn connect(&self) -> Result<ConnectionManager, String> {
        let url = std::str::from_utf8(self.url.expose()).map_err(|_| "the Redis URL is not UTF-8".to_string())?;
        let client = redis::Client::open(url).map_err(|_| "invalid Redis URL".to_string())?;
        // One try per call: the attempt is what is retried, with the destination's backoff.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| format!("cannot connect to Redis: {}", cause(&e)))
    }

    async fn publish(&self, a: &Attempt) -> Result<(), Failure> {
        let (_, mut conn) = self.link.get(|_| true, || self.connect()).await?;
        let meta = Meta::of(a, &self.clock);
        let stream = self.stream.render(&a.source, &a.destination);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream.as_ref());
        if let Some(n) = self.maxlen {
            cmd.arg("MAXLEN").arg(n);
        }
        cmd.arg("*")
            .arg("event_id")
            .arg(meta.event_id)
            .arg("source")
            .arg(meta.source)
            .arg("content_type")
            .arg(meta.content_type.unwrap_or(""))
            .arg("attempt")
            .arg(meta.attempt)
            .arg("webhook_timestamp")
            .arg(meta.timestamp)
            .arg("body")
            .arg(a.body.as_ref());
        let id: Result<String, redis::RedisError> = cmd.query_async(&mut conn).await;
        match id {
            Ok(_) => Ok(()),
            Err(e) if e.is_timeout() => Err(Failure::Timeout(format!("no XADD reply from Redis: {}", cause(&e)))),
            Err(e) => Err(Failure::Other(format!("XADD to {stream:?} failed: {}", cause(&e)))),
        }
    }
}

#[async_trait]
impl Deliver for RedisDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        attempt(self.timeout, self.publish(a)).await
    }
}

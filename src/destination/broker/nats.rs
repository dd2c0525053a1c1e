//! `nats`: a JetStream publish to `subject`, waiting for the stream's ack (`async-nats`). A
//! duplicate ack is a success too: `Nats-Msg-Id` is `<event id>:<destination>`, the same on every
//! attempt and replay, so the stream's duplicate window drops a retry of a message it already has.
//! A subject no stream listens on is a failed attempt (the server answers "no responders").
//! The client reconnects by itself once connected; until it has, attempts time out and are retried.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_trait::async_trait;

use super::link::Link;
use super::{Failure, Meta, attempt, cause};
use crate::clock::SharedClock;
use crate::config::Template;
use crate::destination::{Attempt, AttemptResult, Deliver};
use crate::secret::Secret;

pub struct NatsDestination {
    url: Secret,
    subject: Template,
    timeout: Duration,
    clock: SharedClock,
    link: Link<jetstream::Context>,
}

impl NatsDestination {
    pub fn new(url: Secret, subject: Template, timeout: Duration, clock: SharedClock) -> Self {
        NatsDestination { url, subject, timeout, clock, link: Link::default() }
    }

    async fn connect(&self) -> Result<jetstream::Context, String> {
        let url = std::str::from_utf8(self.url.expose()).map_err(|_| "the NATS URL is not UTF-8".to_string())?;
        let client = async_nats::ConnectOptions::new()
            .name(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(self.timeout)
            .reconnect_delay_callback(reconnect_delay)
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS: {}", cause(&e)))?;
        let mut js = jetstream::new(client);
        js.set_timeout(self.timeout);
        Ok(js)
    }

    async fn publish(&self, a: &Attempt) -> Result<(), Failure> {
        let (_, js) = self.link.get(|_| true, || self.connect()).await?;
        let meta = Meta::of(a, &self.clock);
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in meta.headers() {
            headers.insert(name, value.as_str());
        }
        if let Some(ct) = meta.content_type {
            headers.insert("Content-Type", ct);
        }
        headers.insert("Nats-Msg-Id", format!("{}:{}", a.event_id, a.destination).as_str());
        let subject = self.subject.render(&a.source, &a.destination).into_owned();
        let ack = js
            .publish_with_headers(subject.clone(), headers, a.body.clone())
            .await
            .map_err(|e| failure(e, &subject))?;
        ack.await.map_err(|e| failure(e, &subject))?;
        Ok(())
    }
}

/// How long the client waits before connection attempt `tries` (counted from 1). The first of
/// each series goes at once, as async-nats's own default does: the client calls this before the
/// very first connect too, so a delay there would hold up every destination's first attempt.
/// Once connected, the client reconnects by itself, trying at most 2 s apart: a broker back from a
/// restart gets the retries soon.
fn reconnect_delay(tries: usize) -> Duration {
    match tries {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis(100u64 << (n - 1).min(5)).min(Duration::from_secs(2)),
    }
}

fn failure(e: jetstream::context::PublishError, subject: &str) -> Failure {
    match e.kind() {
        PublishErrorKind::StreamNotFound => {
            Failure::Other(format!("no JetStream stream takes subject {subject:?} (no responders)"))
        }
        PublishErrorKind::TimedOut => Failure::Timeout(format!("no JetStream ack for subject {subject:?} in time")),
        _ => Failure::Other(format!("JetStream publish to {subject:?} failed: {}", cause(&e))),
    }
}

#[async_trait]
impl Deliver for NatsDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        attempt(self.timeout, self.publish(a)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_connection_attempt_waits_for_nothing() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(200));
        assert_eq!(reconnect_delay(3), Duration::from_millis(400));
        assert_eq!(reconnect_delay(40), Duration::from_secs(2));
    }
}

//! Broker destinations (CONTRACT §10, docs/BROKERS.md): one file per broker, each publishing one
//! attempt and waiting for the broker's own confirmation (a JetStream ack, a publisher confirm, the
//! `XADD` reply, a `PUBACK`); anything else, a timeout included, is a failed attempt that dispatch
//! retries. Each destination keeps one connection across attempts (`link.rs`) and makes a new one
//! when it is lost. What a message carries, the same facts an http destination sends, is [`Meta`].
//! Read `nats.rs` first.

mod link;
pub mod mqtt;
pub mod nats;
pub mod rabbitmq;
pub mod redis;

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{Attempt, AttemptResult, Deliver};
use crate::clock::SharedClock;
use crate::config::{Broker, BrokerKind};

/// The destination for `broker`. Nothing connects here: the first attempt does, so a broker that is
/// down at start makes failed attempts (retried), not a gateway that cannot start.
pub fn build(broker: &Broker, name: &str, timeout: Duration, clock: SharedClock) -> Box<dyn Deliver> {
    let url = broker.url.clone();
    let name = name.to_string();
    match &broker.kind {
        BrokerKind::Nats { subject } => Box::new(nats::NatsDestination::new(url, subject.clone(), timeout, clock)),
        BrokerKind::Rabbitmq { exchange, routing_key } => {
            Box::new(rabbitmq::RabbitDestination::new(url, exchange.clone(), routing_key.clone(), timeout, clock))
        }
        BrokerKind::Redis { stream, maxlen } => {
            Box::new(redis::RedisDestination::new(url, stream.clone(), *maxlen, timeout, clock))
        }
        BrokerKind::Mqtt { topic } => Box::new(mqtt::MqttDestination::new(url, name, topic.clone(), timeout, clock)),
    }
}

/// What every message carries besides the body, under the names an http destination uses:
/// `webhook-id`, `webhook-timestamp`, `x-hookgate-source`, `x-hookgate-attempt`, and the content
/// type in the broker's own property where it has one.
pub struct Meta<'a> {
    pub event_id: &'a str,
    pub source: &'a str,
    pub attempt: u32,
    /// Seconds since the epoch, as `webhook-timestamp`.
    pub timestamp: u64,
    pub content_type: Option<&'a str>,
}

impl<'a> Meta<'a> {
    pub fn of(a: &'a Attempt, clock: &SharedClock) -> Meta<'a> {
        let timestamp = clock.now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Meta {
            event_id: &a.event_id,
            source: &a.source,
            attempt: a.attempt,
            timestamp,
            content_type: a.content_type.as_deref(),
        }
    }

    /// The headers, as (name, value) text pairs (the content type apart).
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            ("webhook-id", self.event_id.to_string()),
            ("webhook-timestamp", self.timestamp.to_string()),
            ("x-hookgate-source", self.source.to_string()),
            ("x-hookgate-attempt", self.attempt.to_string()),
        ]
    }
}

/// Why a broker attempt failed.
pub enum Failure {
    /// The broker did not answer in time.
    Timeout(String),
    /// Anything else, said in words (never with the URL).
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Other(s)
    }
}

/// Runs one publish bounded by `timeout`: its success, or a failed attempt saying why.
pub async fn attempt(timeout: Duration, publish: impl Future<Output = Result<(), Failure>>) -> AttemptResult {
    match tokio::time::timeout(timeout, publish).await {
        Ok(Ok(())) => AttemptResult::success(),
        Ok(Err(Failure::Other(e))) => AttemptResult::failure(e),
        Ok(Err(Failure::Timeout(e))) => AttemptResult { timed_out: true, ..AttemptResult::failure(e) },
        Err(_) => AttemptResult {
            timed_out: true,
            ..AttemptResult::failure(format!(
                "timed out after {}: no confirmation from the broker",
                humantime::format_duration(timeout)
            ))
        },
    }
}

/// The innermost cause of an error, which says what happened ("Connection refused") where the
/// outer ones say what was being done.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        last = s.to_string();
        cur = s.source();
    }
    if last == e.to_string() { last } else { format!("{e}: {last}") }
}

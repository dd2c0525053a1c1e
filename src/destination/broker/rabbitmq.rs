//! `rabbitmq`: an AMQP 0-9-1 publish to `exchange` with `routing_key` (`lapin`) on a channel in
//! confirm mode, persistent (`delivery_mode` 2), `mandatory`, `message_id` = event id. Success is
//! the broker's ack with nothing returned: a message that no queue takes (returned as
//! `NO_ROUTE`) or a nack is a failed attempt, so it is retried rather than dropped by the broker.
//! One connection and one channel per destination; a closed channel (an unknown exchange closes
//! it) or a lost connection is replaced at the next attempt.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::link::Link;
use super::{Failure, Meta, attempt, cause};
use crate::clock::SharedClock;
use crate::config::Template;
use crate::destination::{Attempt, AttemptResult, Deliver};
use crate::secret::Secret;

pub struct RabbitDestination {
    url: Secret,
    exchange: String,
    routing_key: Template,
    timeout: Duration,
    clock: SharedClock,
    link: Link<Arc<Session>>,
}

/// The connection and its channel in confirm mode.
pub struct Session {
    connection: Connection,
    channel: Channel,
}

impl Session {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl RabbitDestination {
    pub fn new(url: Secret, exchange: String, routing_key: Template, timeout: Duration, clock: SharedClock) -> Self {
        RabbitDestination { url, exchange, routing_key, timeout, clock, link: Link::default() }
    }

    async fn connect(&self) -> Result<Arc<Session>, String> {
        let url = std::str::from_utf8(self.url.expose()).map_err(|_| "the AMQP URL is not UTF-8".to_string())?;
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(concat!("hookgate/", env!("CARGO_PKG_VERSION"))));
        let connection = Connection::connect(url, properties)
            .await
            .map_err(|e| format!("cannot connect to RabbitMQ: {}", cause(&e)))?;
        let channel =
            connection.create_channel().await.map_err(|e| format!("cannot open an AMQP channel: {}", cause(&e)))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot turn on publisher confirms: {}", cause(&e)))?;
        Ok(Arc::new(Session { connection, channel }))
    }

    async fn publish(&self, a: &Attempt) -> Result<(), Failure> {
        let (n, session) = self.link.get(|s| s.usable(), || self.connect()).await?;
        let meta = Meta::of(a, &self.clock);
        let mut headers = FieldTable::default();
        for (name, value) in meta.headers() {
            headers.insert(ShortString::from(name), AMQPValue::LongString(LongString::from(value)));
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(a.event_id.as_str()))
            .with_timestamp(meta.timestamp)
            .with_app_id(ShortString::from("hookgate"))
            .with_headers(headers);
        if let Some(ct) = meta.content_type {
            properties = properties.with_content_type(ShortString::from(ct));
        }
        let key = self.routing_key.render(&a.source, &a.destination).into_owned();
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        let lost = |e: lapin::Error, doing: &str| {
            self.link.lost(n);
            Failure::Other(format!("{doing}: {}", cause(&e)))
        };
        let confirm = session
            .channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                ShortString::from(key.as_str()),
                options,
                &a.body,
                properties,
            )
            .await
            .map_err(|e| lost(e, "AMQP publish failed"))?;
        match confirm.await.map_err(|e| lost(e, "no publisher confirm"))? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => Err(Failure::Other(format!(
                "unroutable: exchange {:?} has no queue for routing key {key:?} ({} {})",
                self.exchange, returned.reply_code, returned.reply_text
            ))),
            Confirmation::Nack(None) => Err(Failure::Other("the broker refused the message (nack)".into())),
            Confirmation::NotRequested => {
                self.link.lost(n);
                Err(Failure::Other("the channel is not in confirm mode".into()))
            }
        }
    }
}

#[async_trait]
impl Deliver for RabbitDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        attempt(self.timeout, self.publish(a)).await
    }
}

//! `mqtt`: an MQTT 5 publish to `topic` at QoS 1 (`rumqttc`); the broker's `PUBACK` with a success
//! reason ("success" or "no matching subscribers") is the success, any other reason a failure.
//! The headers an http destination sends are user properties, the content type the message's
//! content-type property.
//!
//! rumqttc reports a `PUBACK` by packet id, and a publish's packet id only as an event once it is
//! sent. Publishes are handed to the event loop one at a time under [`Waiters`]' lock and it sends
//! them in that order, so the n-th "sent" event is the n-th publish: that pairs each attempt with
//! its packet id. A connection is never resumed: when its event loop fails, every attempt still
//! waiting on it fails (to be retried; the receiver deduplicates by `webhook-id`) and the next
//! attempt connects afresh, so no packet id is ever reused across connections.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, Transport};
use tokio::sync::oneshot;

use super::link::Link;
use super::{Failure, Meta, attempt, cause};
use crate::clock::SharedClock;
use crate::config::Template;
use crate::destination::{Attempt, AttemptResult, Deliver};
use crate::secret::Secret;

/// Publishes queued in the event loop's channel at most; past it an attempt fails at once.
const QUEUE: usize = 1024;

pub struct MqttDestination {
    url: Secret,
    /// The destination's name, part of the client id.
    name: String,
    topic: Template,
    timeout: Duration,
    clock: SharedClock,
    link: Link<Arc<Session>>,
}

type Reply = oneshot::Sender<Result<(), String>>;

/// One connection: the client that queues publishes and who waits for which acknowledgement.
pub struct Session {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    alive: Arc<AtomicBool>,
}

#[derive(Default)]
struct Waiters {
    /// Handed to the event loop, not yet sent (no packet id yet), in order.
    queued: VecDeque<Reply>,
    /// Sent, waiting for the PUBACK of this packet id.
    sent: HashMap<u16, Reply>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

impl Waiters {
    fn close(&mut self, why: String) {
        for reply in self.queued.drain(..).chain(self.sent.drain().map(|(_, r)| r)) {
            let _ = reply.send(Err(why.clone()));
        }
        self.closed = Some(why);
    }
}

impl MqttDestination {
    pub fn new(url: Secret, name: String, topic: Template, timeout: Duration, clock: SharedClock) -> Self {
        MqttDestination { url, name, topic, timeout, clock, link: Link::default() }
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let text = std::str::from_utf8(self.url.expose()).map_err(|_| "the MQTT URL is not UTF-8".to_string())?;
        let url = url::Url::parse(text).map_err(|e| format!("invalid MQTT URL: {e}"))?;
        let tls = url.scheme() == "mqtts";
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        // A fresh id per connection: two gateways (or a restart) never take each other's session.
        let id = format!("hookgate-{}-{}", self.name, uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(id, host, port);
        options.set_clean_start(true).set_keep_alive(Duration::from_secs(30)).set_request_channel_capacity(QUEUE);
        options.set_connection_timeout(self.timeout.as_secs().max(1));
        if !url.username().is_empty() {
            let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
            let password = percent_encoding::percent_decode_str(url.password().unwrap_or("")).decode_utf8_lossy();
            options.set_credentials(user, password);
        }
        if tls {
            options.set_transport(Transport::tls_with_default_config());
        }
        Ok(options)
    }

    async fn connect(&self) -> Result<Arc<Session>, String> {
        let (client, mut events) = AsyncClient::new(self.options()?, QUEUE);
        // Wait for the CONNACK before anything is published.
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("cannot connect to the MQTT broker: {}", cause(&e))),
            }
        }
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(run(events, waiters.clone(), alive.clone()));
        Ok(Arc::new(Session { client, waiters, alive }))
    }

    async fn publish(&self, a: &Attempt) -> Result<(), Failure> {
        let (n, session) = self.link.get(|s| s.alive.load(Ordering::Relaxed), || self.connect()).await?;
        let meta = Meta::of(a, &self.clock);
        let properties = PublishProperties {
            user_properties: meta.headers().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            content_type: meta.content_type.map(str::to_string),
            ..PublishProperties::default()
        };
        let topic = self.topic.render(&a.source, &a.destination).into_owned();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = session.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(why) = &waiters.closed {
                self.link.lost(n);
                return Err(Failure::Other(why.clone()));
            }
            waiters.queued.push_back(tx);
            let sent = session.client.try_publish_with_properties(
                topic.clone(),
                QoS::AtLeastOnce,
                false,
                a.body.clone(),
                properties,
            );
            if let Err(e) = sent {
                waiters.queued.pop_back();
                return Err(Failure::Other(format!("cannot queue the MQTT publish: {e}")));
            }
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.link.lost(n);
                Err(Failure::Other(format!("MQTT publish to {topic:?} failed: {e}")))
            }
            Err(_) => {
                self.link.lost(n);
                Err(Failure::Other("the MQTT connection ended before the PUBACK".into()))
            }
        }
    }
}

/// The connection's event loop: pairs each sent publish with its packet id and each PUBACK with
/// its waiter, until the connection fails or the destination is gone (its client dropped).
async fn run(mut events: EventLoop, waiters: Arc<Mutex<Waiters>>, alive: Arc<AtomicBool>) {
    loop {
        let event = events.poll().await;
        let mut w = waiters.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                if let Some(reply) = w.queued.pop_front() {
                    w.sent.insert(pkid, reply);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(reply) = w.sent.remove(&ack.pkid) {
                    let result = match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                        other => Err(format!("the broker answered PUBACK {other:?}")),
                    };
                    let _ = reply.send(result);
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                alive.store(false, Ordering::Relaxed);
                w.close(format!("the broker disconnected ({:?})", d.reason_code));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                alive.store(false, Ordering::Relaxed);
                w.close(format!("the MQTT connection was lost: {}", cause(&e)));
                return;
            }
        }
    }
}

#[async_trait]
impl Deliver for MqttDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        attempt(self.timeout, self.publish(a)).await
    }
}

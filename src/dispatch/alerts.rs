//! Alerts (CONTRACT §8, docs/DELIVERY.md): when a delivery dies or a destination's circuit opens or
//! closes, the dispatcher raises an event of the built-in source `hookgate` whose body says what
//! happened. It is stored with `Store::enqueue` like any event, one delivery per destination of
//! `[alerts] deliver_to`, after that list's filters (and the destinations' ordering keys) ran as
//! they do at ingest; transforms, retries and dead letters are the ordinary ones. Nothing here
//! delivers. No loops: a destination that receives alerts raises none about itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

use crate::config::{ALERT_SOURCE, AlertKind, Alerts, Config};
use crate::routing::{self, Programs, document::Parts, pool::Pool, reads::Needs};
use crate::store::{Enqueued, Millis, NewEvent, Planned, Store, StoreError, from_millis, new_event_id};
use crate::verify::{Unverified, Verifier};

/// What happened, with the fields of the alert's body that apply to it.
#[derive(Debug, Clone)]
pub enum Alert {
    /// A delivery went `dead` (its last attempt at `at`).
    DeliveryDead {
        destination: String,
        source: String,
        event_id: String,
        delivery_id: i64,
        attempts: u32,
        last_error: Option<String>,
        /// The claim of its last attempt: a retried raise of the same death is one event.
        claim: i64,
    },
    CircuitOpened {
        destination: String,
        last_error: Option<String>,
    },
    CircuitClosed {
        destination: String,
    },
}

impl Alert {
    pub fn kind(&self) -> AlertKind {
        match self {
            Alert::DeliveryDead { .. } => AlertKind::DeliveryDead,
            Alert::CircuitOpened { .. } => AlertKind::CircuitOpened,
            Alert::CircuitClosed { .. } => AlertKind::CircuitClosed,
        }
    }

    fn destination(&self) -> &str {
        match self {
            Alert::DeliveryDead { destination, .. }
            | Alert::CircuitOpened { destination, .. }
            | Alert::CircuitClosed { destination } => destination,
        }
    }

    /// The event's body: `{"type", "at", "destination", ...}` with the fields that apply.
    pub fn body(&self, at: Millis) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!(self.kind().as_str()));
        m.insert("at".into(), json!(humantime::format_rfc3339_millis(from_millis(at)).to_string()));
        m.insert("destination".into(), json!(self.destination()));
        match self {
            Alert::DeliveryDead { source, event_id, delivery_id, attempts, last_error, .. } => {
                m.insert("source".into(), json!(source));
                m.insert("event_id".into(), json!(event_id));
                m.insert("delivery_id".into(), json!(delivery_id));
                m.insert("attempts".into(), json!(attempts));
                m.insert("last_error".into(), json!(last_error));
            }
            Alert::CircuitOpened { last_error, .. } => {
                m.insert("last_error".into(), json!(last_error));
            }
            Alert::CircuitClosed { .. } => {}
        }
        Value::Object(m)
    }

    /// The event's dedupe key: the same happening raised twice (a retried enqueue) is one event.
    fn dedupe_key(&self, at: Millis) -> String {
        match self {
            Alert::DeliveryDead { delivery_id, claim, .. } => format!("delivery.dead:{delivery_id}:{claim}"),
            other => format!("{}:{}:{at}", other.kind().as_str(), other.destination()),
        }
    }
}

/// Raises the alerts of one config.
pub struct Alerter {
    store: Arc<dyn Store>,
    alerts: Alerts,
    /// The filters of `[alerts] deliver_to` and its destinations' ordering keys.
    programs: Programs,
    routing: Option<Pool>,
}

impl Alerter {
    /// None when the config has no `[alerts]`.
    pub fn new(config: &Config, store: Arc<dyn Store>, routing: Option<Pool>) -> Option<Self> {
        let alerts = config.alerts.clone()?;
        let programs = config.programs(&alerts.routes, &alerts.deliver_to);
        Some(Alerter { store, alerts, programs, routing })
    }

    /// Whether `alert` is to be raised: its kind is in `on`, and it is not about a destination that
    /// receives alerts (no loops).
    pub fn wants(&self, alert: &Alert) -> bool {
        self.alerts.on.contains(&alert.kind()) && !self.alerts.receives(alert.destination())
    }

    /// Stores the alert's event (retrying briefly while the store is unavailable); logs what came of it.
    pub async fn raise(&self, alert: Alert, at: Millis) {
        if !self.wants(&alert) {
            return;
        }
        let body = Bytes::from(alert.body(at).to_string());
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let unverified = Unverified { path_and_query: String::new(), headers, body: body.clone() };
        // hookgate made this request itself: there is nothing to verify, and `none` accepts it.
        let Ok(verified) = unverified.verify(&Verifier::insecure(), from_millis(at)) else { return };
        let id = new_event_id();
        let parts = |_: &Needs| Parts {
            source: ALERT_SOURCE.to_string(),
            event_id: id.clone(),
            path_and_query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            content_type: Some("application/json".into()),
            body: body.clone(),
        };
        let (verdicts, keys) = self.programs.run(self.routing.as_ref(), parts).await;
        let planned = routing::planned(&self.alerts.deliver_to, &verdicts, &keys);
        let kind = alert.kind().as_str();
        for wait_ms in [0u64, 100, 500, 2000] {
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            let deliveries = Planned::routed(&self.alerts.deliver_to, &planned);
            let event = NewEvent {
                id: id.clone(),
                verified: &verified,
                source: ALERT_SOURCE,
                dedupe_key: alert.dedupe_key(at),
                content_type: Some("application/json".into()),
                headers_json: r#"{"content-type":"application/json"}"#.into(),
                deliveries,
                received_at: from_millis(at),
                traceparent: None,
            };
            match self.store.enqueue(event).await {
                Ok(Enqueued::Queued { event_id }) => {
                    tracing::info!(alert = kind, destination = %alert.destination(), event_id = %event_id, "alert raised");
                    return;
                }
                Ok(Enqueued::Duplicate { .. }) => return,
                Err(StoreError::Invalid(e)) => {
                    tracing::error!(alert = kind, error = %e, "alert not stored");
                    return;
                }
                Err(e) => tracing::warn!(alert = kind, error = %e, "cannot store an alert; retrying"),
            }
        }
        tracing::error!(alert = kind, destination = %alert.destination(), "alert not stored: the store is unavailable");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_body_has_the_fields_that_apply() {
        let dead = Alert::DeliveryDead {
            destination: "crm".into(),
            source: "stripe".into(),
            event_id: "e1".into(),
            delivery_id: 2048,
            attempts: 3,
            last_error: Some("HTTP 500".into()),
            claim: 7,
        };
        let body = dead.body(1_000);
        assert_eq!(
            body,
            json!({"type": "delivery.dead", "at": "1970-01-01T00:00:01.000Z", "destination": "crm",
                   "source": "stripe", "event_id": "e1", "delivery_id": 2048, "attempts": 3, "last_error": "HTTP 500"})
        );
        let closed = Alert::CircuitClosed { destination: "crm".into() }.body(0);
        assert_eq!(closed.as_object().unwrap().len(), 3, "{closed}");
        assert_eq!(dead.dedupe_key(5), dead.dedupe_key(6), "one death, one event");
    }
}

//! The operator API under `/api` (CONTRACT §5, JSON shapes in §6): list and show events, list
//! deliveries, replay. Handlers only parse, call the [`Store`](crate::store::Store) and shape JSON;
//! every error is `{"error": "..."}` with 400, 404 or 503.

use std::time::SystemTime;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};

use super::AdminState;
use crate::store::{
    Attempt, DeliveryInfo, DeliveryQuery, DeliveryStatus, EventDetail, EventQuery, EventStatus, EventSummary, Millis,
    ReplayFilter, StoreError, from_millis, millis,
};

/// Page size when `limit` is not given, and the largest accepted.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// An event's derived status (`?status=` on events).
pub const EVENT_STATUSES: [&str; 3] = ["pending", "succeeded", "dead"];
/// What a bulk replay may select: dead letters, or failed deliveries waiting for their backoff.
pub const REPLAYABLE: [&str; 2] = ["dead", "failed"];

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The only invalid argument a store reports is a cursor it did not make.
            StoreError::Invalid(msg) => ApiError::BadRequest(msg),
            e => ApiError::Store(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Self::Store(e) => {
                tracing::error!(error = %e, "admin request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable".to_string())
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

/// RFC 3339 in UTC with milliseconds, as every admin time is shown.
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(from_millis(ms)).to_string()
}

/// Query parameters, checked against the names an endpoint accepts (a typo such as `stauts`
/// would otherwise silently widen the selection).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(q: Result<Query<Vec<(String, String)>>, QueryRejection>, accepted: &[&str]) -> Result<Params, ApiError> {
        let Query(pairs) = q.map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
        for (k, _) in &pairs {
            if !accepted.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!("unknown query parameter {k:?}; accepted: {accepted:?}")));
            }
        }
        Ok(Params(pairs))
    }

    /// The value of `name`; an empty value counts as absent.
    fn get(&self, name: &str) -> Option<String> {
        self.0.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.clone())
    }

    fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            Some(v) if !allowed.contains(&v.as_str()) => {
                Err(ApiError::BadRequest(format!("unknown {name} {v:?}; accepted: {allowed:?}")))
            }
            v => Ok(v),
        }
    }

    fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!("invalid limit {v:?}; a number from 1 to {MAX_LIMIT}"))),
            },
        }
    }

    /// A time: RFC 3339 (`2026-01-31T12:00:00Z`) or a duration ago (`15m`, `2h`, `7d`).
    fn time(&self, name: &str, now: SystemTime) -> Result<Option<Millis>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        if let Ok(t) = humantime::parse_rfc3339_weak(&v) {
            return Ok(Some(millis(t)));
        }
        if let Ok(ago) = crate::config::duration::parse(&v) {
            return Ok(Some(millis(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))));
        }
        Err(ApiError::BadRequest(format!(
            "invalid {name} {v:?}; write an RFC 3339 UTC time such as 2026-01-31T12:00:00Z, or a duration ago such as 15m"
        )))
    }
}

fn summary_json(e: &EventSummary) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("source".into(), json!(e.source));
    m.insert("received_at".into(), json!(rfc3339(e.received_at)));
    m.insert("status".into(), json!(e.status));
    m.insert("dedupe_key".into(), json!(e.dedupe_key));
    m.insert("content_type".into(), json!(e.content_type));
    m
}

fn attempt_json(a: &Attempt) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("attempt".into(), json!(a.attempt));
    m.insert("at".into(), json!(rfc3339(a.at)));
    m.insert("outcome".into(), json!(a.outcome));
    // Both keys always, null when the attempt has none (no HTTP response, not a command, timed out).
    m.insert("status_code".into(), json!(a.status_code));
    m.insert("exit_code".into(), json!(a.exit_code));
    m.insert("error".into(), json!(a.error));
    m.insert("duration_ms".into(), json!(a.duration_ms));
    Value::Object(m)
}

/// A delivery; with its attempt log when `with_log` (an event's page), without in lists.
fn delivery_json(d: &DeliveryInfo, with_log: bool) -> Value {
    let mut v = json!({
        "id": d.id,
        "event_id": d.event_id,
        "source": d.source,
        "destination": d.destination,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.map(rfc3339),
        "last_error": d.last_error,
    });
    if with_log {
        v["attempt_log"] = d.attempt_log.iter().map(attempt_json).collect();
    }
    v
}

/// The full event: metadata, redacted headers, body (text, or base64 when not UTF-8), deliveries.
pub fn event_json(e: &EventDetail) -> Value {
    let mut m = summary_json(&e.summary);
    // Stored already redacted (ingest/redact.rs); shown as an object, never re-parsed as text.
    let headers = serde_json::from_str::<Value>(&e.headers_json).unwrap_or_else(|_| json!({}));
    m.insert("headers".into(), headers);
    match std::str::from_utf8(&e.body) {
        Ok(text) => {
            m.insert("body".into(), json!(text));
        }
        Err(_) => {
            m.insert("body".into(), json!(base64::engine::general_purpose::STANDARD.encode(&e.body)));
            m.insert("body_encoding".into(), json!("base64"));
        }
    }
    m.insert("deliveries".into(), e.deliveries.iter().map(|d| delivery_json(d, true)).collect());
    Value::Object(m)
}

type Q = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub async fn list_events(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["source", "status", "since", "until", "limit", "cursor"])?;
    let now = SystemTime::now();
    let query = EventQuery {
        source: p.get("source"),
        status: p.one_of("status", &EVENT_STATUSES)?.and_then(|s| EventStatus::parse(&s)),
        since: p.time("since", now)?,
        until: p.time("until", now)?,
        limit: p.limit()?,
        cursor: p.get("cursor"),
    };
    let page = state.store.list_events(query).await?;
    let items: Vec<Value> = page.items.iter().map(|e| Value::Object(summary_json(e))).collect();
    Ok(Json(json!({ "items": items, "next_cursor": page.next_cursor })))
}

pub async fn get_event(State(state): State<AdminState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match state.store.get_event(&id).await? {
        Some(e) => Ok(Json(event_json(&e))),
        None => Err(ApiError::NotFound(format!("no event {id:?}"))),
    }
}

pub async fn replay_event(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    q: Q,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["destination"])?;
    let destination = p.get("destination");
    let Some(n) = state.store.replay_event(&id, destination.as_deref()).await? else {
        return Err(ApiError::NotFound(format!("no event {id:?}")));
    };
    if n == 0
        && let Some(dest) = &destination
    {
        // Nothing replayed: say whether the destination is wrong or its delivery is in flight.
        let known =
            state.store.get_event(&id).await?.is_some_and(|e| e.deliveries.iter().any(|d| &d.destination == dest));
        if !known {
            return Err(ApiError::NotFound(format!("event {id:?} has no delivery to {dest:?}")));
        }
    }
    tracing::info!(event_id = %id, destination = destination.as_deref().unwrap_or("*"), replayed = n, "replay requested");
    Ok(Json(json!({ "replayed": n })))
}

pub async fn list_deliveries(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["status", "destination", "source", "limit", "cursor"])?;
    let query = DeliveryQuery {
        status: p.one_of("status", &DeliveryStatus::NAMES)?.and_then(|s| DeliveryStatus::parse(&s)),
        destination: p.get("destination"),
        source: p.get("source"),
        limit: p.limit()?,
        cursor: p.get("cursor"),
    };
    let page = state.store.list_deliveries(query).await?;
    let items: Vec<Value> = page.items.iter().map(|d| delivery_json(d, false)).collect();
    Ok(Json(json!({ "items": items, "next_cursor": page.next_cursor })))
}

pub async fn replay_deliveries(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, &["status", "destination", "source"])?;
    let Some(status) = p.one_of("status", &REPLAYABLE)?.and_then(|s| DeliveryStatus::parse(&s)) else {
        return Err(ApiError::BadRequest(format!("status is required; accepted: {REPLAYABLE:?}")));
    };
    let filter = ReplayFilter { status, destination: p.get("destination"), source: p.get("source") };
    let started = std::time::Instant::now();
    let n = state.store.replay_deliveries(filter.clone()).await?;
    tracing::info!(
        status = %filter.status,
        destination = filter.destination.as_deref().unwrap_or("*"),
        source = filter.source.as_deref().unwrap_or("*"),
        replayed = n,
        took_ms = started.elapsed().as_millis() as u64,
        "bulk replay requested"
    );
    Ok(Json(json!({ "replayed": n })))
}

/// Unknown path under /api.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /api/openapi.json".into())
}

/// The OpenAPI description of this API (hand-written, `docs/openapi.json`).
pub async fn openapi() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn limits_and_times_are_checked() {
        assert_eq!(params(&[]).limit().unwrap(), DEFAULT_LIMIT);
        assert_eq!(params(&[("limit", "7")]).limit().unwrap(), 7);
        for bad in ["0", "-1", "x", "1001"] {
            assert!(params(&[("limit", bad)]).limit().is_err(), "{bad}");
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let p = params(&[("since", "2026-01-31T12:00:00Z"), ("until", "1h"), ("bad", "yesterday")]);
        assert_eq!(p.time("since", now).unwrap(), Some(1_769_860_800_000));
        assert_eq!(p.time("until", now).unwrap(), Some((1_000_000 - 3600) * 1000));
        assert!(p.time("bad", now).is_err());
        assert!(params(&[("status", "gone")]).one_of("status", &EVENT_STATUSES).is_err());
    }

    #[test]
    fn binary_body_is_base64_and_unknown_codes_are_null() {
        let e = EventDetail {
            summary: EventSummary {
                id: "e1".into(),
                source: "s".into(),
                received_at: 0,
                status: EventStatus::Pending,
                dedupe_key: "k".into(),
                content_type: None,
            },
            headers_json: r#"{"x-a":"1"}"#.into(),
            body: Bytes::from_static(&[0xff, 0x00]),
            deliveries: vec![DeliveryInfo {
                id: 1,
                event_id: "e1".into(),
                source: "s".into(),
                destination: "d".into(),
                status: DeliveryStatus::Failed,
                attempts: 1,
                next_attempt_at: Some(1000),
                last_error: Some("boom".into()),
                attempt_log: vec![Attempt {
                    attempt: 1,
                    at: 0,
                    outcome: "failure".into(),
                    status_code: None,
                    exit_code: Some(3),
                    error: Some("boom".into()),
                    duration_ms: 5,
                }],
            }],
        };
        let v = event_json(&e);
        assert_eq!(v["body"], "/wA=");
        assert_eq!(v["body_encoding"], "base64");
        assert_eq!(v["headers"]["x-a"], "1");
        assert_eq!(v["received_at"], "1970-01-01T00:00:00.000Z");
        let a = &v["deliveries"][0]["attempt_log"][0];
        assert_eq!(a["exit_code"], 3);
        assert!(a["status_code"].is_null() && a.get("status_code").is_some(), "both keys, null when unknown");
        assert_eq!(v["deliveries"][0]["next_attempt_at"], "1970-01-01T00:00:01.000Z");
    }
}

//! The operator API under `/api` (CONTRACT §5, JSON shapes in §6): list and show events, list
//! deliveries, replay. Handlers only parse, call the [`Store`](crate::store::Store) and shape JSON;
//! every error is `{"error": "..."}` with 400, 404 or 503.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;
use super::params::{Params, Q};
use crate::store::{
    Attempt, DeliveryInfo, DeliveryQuery, DeliveryStatus, EventDetail, EventQuery, EventStatus, EventSummary, Millis,
    ReplayFilter, from_millis,
};

/// An event's derived status (`?status=` on events).
pub const EVENT_STATUSES: [&str; 4] = ["pending", "succeeded", "dead", "filtered"];
/// What a bulk replay may select: dead letters, failed deliveries waiting for their backoff, or
/// deliveries a filter left out (delivered anyway: with `destination`, after fixing a filter).
pub const REPLAYABLE: [&str; 3] = ["dead", "failed", "filtered"];

/// The query parameters each endpoint accepts (anything else is 400); a unit test holds these to
/// the ones docs/openapi.json lists.
const LIST_EVENTS_PARAMS: &[&str] = &["source", "status", "since", "until", "limit", "cursor"];
const REPLAY_EVENT_PARAMS: &[&str] = &["destination"];
const LIST_DELIVERIES_PARAMS: &[&str] = &["status", "destination", "source", "limit", "cursor"];
const REPLAY_DELIVERIES_PARAMS: &[&str] = &["status", "destination", "source"];

/// RFC 3339 in UTC with milliseconds, as every admin time is shown.
pub fn rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_millis(from_millis(ms)).to_string()
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

/// `body` as text, or base64 with `"body_encoding": "base64"` when it is not UTF-8.
pub(super) fn insert_body(m: &mut serde_json::Map<String, Value>, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => {
            m.insert("body".into(), json!(text));
        }
        Err(_) => {
            m.insert("body".into(), json!(base64::engine::general_purpose::STANDARD.encode(body)));
            m.insert("body_encoding".into(), json!("base64"));
        }
    }
}

/// The full event: metadata, redacted headers, body (text, or base64 when not UTF-8), deliveries.
pub fn event_json(e: &EventDetail) -> Value {
    let mut m = summary_json(&e.summary);
    // Stored already redacted (ingest/redact.rs); shown as an object, never re-parsed as text.
    let headers = serde_json::from_str::<Value>(&e.headers_json).unwrap_or_else(|_| json!({}));
    m.insert("headers".into(), headers);
    insert_body(&mut m, &e.body);
    m.insert("deliveries".into(), e.deliveries.iter().map(|d| delivery_json(d, true)).collect());
    Value::Object(m)
}

pub async fn list_events(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, LIST_EVENTS_PARAMS)?;
    let now = state.clock.now();
    let query = EventQuery {
        source: p.name("source")?,
        status: p.one_of("status", &EVENT_STATUSES)?.and_then(|s| EventStatus::parse(&s)),
        since: p.time("since", now)?,
        until: p.time("until", now)?,
        limit: p.limit()?,
        cursor: p.cursor()?,
    };
    let page = state.store.list_events(query).await?;
    let items: Vec<Value> = page.items.iter().map(|e| Value::Object(summary_json(e))).collect();
    Ok(Json(json!({ "items": items, "next_cursor": page.next_cursor })))
}

/// An event id from the path. One holding a NUL names no event, and PostgreSQL would refuse it
/// as text (a 503 for what is a 404).
fn event_id(id: String) -> Result<String, ApiError> {
    if id.contains('\0') {
        return Err(ApiError::NotFound(format!("no event {id:?}")));
    }
    Ok(id)
}

pub async fn get_event(State(state): State<AdminState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = event_id(id)?;
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
    let id = event_id(id)?;
    let p = Params::parse(q, REPLAY_EVENT_PARAMS)?;
    let destination = p.name("destination")?;
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
    let p = Params::parse(q, LIST_DELIVERIES_PARAMS)?;
    let query = DeliveryQuery {
        status: p.one_of("status", &DeliveryStatus::NAMES)?.and_then(|s| DeliveryStatus::parse(&s)),
        destination: p.name("destination")?,
        source: p.name("source")?,
        limit: p.limit()?,
        cursor: p.cursor()?,
    };
    let page = state.store.list_deliveries(query).await?;
    let items: Vec<Value> = page.items.iter().map(|d| delivery_json(d, false)).collect();
    Ok(Json(json!({ "items": items, "next_cursor": page.next_cursor })))
}

pub async fn replay_deliveries(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, REPLAY_DELIVERIES_PARAMS)?;
    let Some(status) = p.one_of("status", &REPLAYABLE)?.and_then(|s| DeliveryStatus::parse(&s)) else {
        return Err(ApiError::BadRequest(format!("status is required; accepted: {REPLAYABLE:?}")));
    };
    let filter = ReplayFilter { status, destination: p.name("destination")?, source: p.name("source")? };
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

    /// The query parameters docs/openapi.json lists for `method path`, `$ref`s resolved.
    fn documented_params(doc: &Value, path: &str, method: &str) -> Vec<String> {
        let mut names: Vec<String> = doc["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => &doc["components"]["parameters"][r.trim_start_matches("#/components/parameters/")],
                None => p,
            })
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_openapi_document_lists_the_parameters_the_code_accepts() {
        let doc: Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        for (path, method, accepted) in [
            ("/api/events", "get", LIST_EVENTS_PARAMS),
            ("/api/events/{id}/replay", "post", REPLAY_EVENT_PARAMS),
            ("/api/deliveries", "get", LIST_DELIVERIES_PARAMS),
            ("/api/deliveries/replay", "post", REPLAY_DELIVERIES_PARAMS),
            ("/api/destinations/{name}/claim", "post", super::super::pull::CLAIM_PARAMS),
        ] {
            let mut want: Vec<String> = accepted.iter().map(|s| s.to_string()).collect();
            want.sort();
            assert_eq!(documented_params(&doc, path, method), want, "{method} {path}");
            assert!(doc["paths"][path][method]["responses"].get("400").is_some(), "{method} {path} documents 400");
        }
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

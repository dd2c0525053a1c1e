//! The pull consumers' API (CONTRACT §10): `POST /api/destinations/{name}/claim` (a long poll),
//! `POST /api/deliveries/{id}/ack` and `/nack`. Parses, checks the caller's scope, and calls
//! `dispatch::Puller`, which claims and records through the store like the workers do.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AdminState;
use super::api::{insert_body, rfc3339};
use super::error::ApiError;
use super::params::{Params, Q};
use crate::dispatch::pull::{PullError, Pulled, Settled};

pub(super) const CLAIM_PARAMS: &[&str] = &["max", "wait"];
const NO_PARAMS: &[&str] = &[];
/// `max` when not given, and the largest accepted.
pub const DEFAULT_MAX: usize = 1;
pub const MAX_MAX: usize = 100;
/// `wait` when not given, and the longest accepted (beyond a minute, proxies cut idle requests).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The destination a pull destination's own token is valid for; set by `auth.rs` on requests
/// made with such a token (absent for the admin token).
#[derive(Debug, Clone)]
pub struct Scope(pub String);

impl From<PullError> for ApiError {
    fn from(e: PullError) -> Self {
        match e {
            PullError::NotFound(m) => ApiError::NotFound(m),
            PullError::Forbidden(m) => ApiError::Forbidden(m),
            PullError::Conflict(m) => ApiError::Conflict(m),
            PullError::Store(e) => e.into(),
        }
    }
}

fn puller(state: &AdminState) -> Result<&crate::dispatch::Puller, ApiError> {
    state.pull.as_deref().ok_or_else(|| ApiError::NotFound("this config has no pull destination".into()))
}

fn item(p: &Pulled) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("delivery_id".into(), json!(p.delivery_id));
    m.insert("event_id".into(), json!(p.event_id));
    m.insert("source".into(), json!(p.source));
    m.insert("content_type".into(), json!(p.content_type));
    // Stored already redacted (ingest/redact.rs).
    m.insert("headers".into(), serde_json::from_str::<Value>(&p.headers_json).unwrap_or_else(|_| json!({})));
    insert_body(&mut m, &p.body);
    m.insert("attempt".into(), json!(p.attempt));
    m.insert("lease_until".into(), json!(rfc3339(p.lease_until)));
    Value::Object(m)
}

pub async fn claim(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    scope: Option<Extension<Scope>>,
    q: Q,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q, CLAIM_PARAMS)?;
    if let Some(Extension(Scope(own))) = &scope
        && *own != name
    {
        return Err(ApiError::Forbidden(format!("this token is for destination {own:?} only")));
    }
    let max = match p.get("max") {
        None => DEFAULT_MAX,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_MAX).contains(&n) => n,
            _ => return Err(ApiError::BadRequest(format!("invalid max {v:?}; a number from 1 to {MAX_MAX}"))),
        },
    };
    let wait = match p.get("wait") {
        None => DEFAULT_WAIT,
        Some(v) => match crate::config::duration::parse(v) {
            Ok(d) if d <= MAX_WAIT => d,
            Ok(_) => return Err(ApiError::BadRequest(format!("invalid wait {v:?}; at most {}s", MAX_WAIT.as_secs()))),
            Err(e) => return Err(ApiError::BadRequest(format!("invalid wait {v:?}: {e}"))),
        },
    };
    let puller = puller(&state)?;
    if !puller.has(&name) {
        let known = state.destinations.iter().any(|(n, _)| *n == name);
        return Err(ApiError::NotFound(if known {
            format!("destination {name:?} is not a pull destination")
        } else {
            format!("no destination {name:?}")
        }));
    }
    let items = puller.claim(&name, max, wait).await?;
    Ok(Json(json!({ "items": items.iter().map(item).collect::<Vec<_>>() })))
}

fn delivery_id(id: &str) -> Result<i64, ApiError> {
    match id.parse::<i64>() {
        Ok(n) if id.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ApiError::NotFound(format!("no delivery {id:?}"))),
    }
}

fn settled_json(id: i64, s: Settled) -> Json<Value> {
    Json(json!({ "delivery_id": id, "status": s.status, "next_attempt_at": s.next_attempt_at.map(rfc3339) }))
}

pub async fn ack(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    scope: Option<Extension<Scope>>,
    q: Q,
) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    let id = delivery_id(&id)?;
    let settled = puller(&state)?.ack(id, scope.as_ref().map(|Extension(Scope(s))| s.as_str())).await?;
    Ok(settled_json(id, settled))
}

/// A nack's body: both keys optional; an empty body is a nack without a reason.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nack {
    error: Option<String>,
    retry_after: Option<String>,
}

pub async fn nack(
    State(state): State<AdminState>,
    Path(id): Path<String>,
    scope: Option<Extension<Scope>>,
    q: Q,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    let id = delivery_id(&id)?;
    let nack: Nack = if body.iter().all(u8::is_ascii_whitespace) {
        Nack::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid nack body: {e}")))?
    };
    let retry_after = match nack.retry_after.as_deref() {
        None => None,
        Some(v) => Some(
            crate::config::duration::parse(v)
                .map_err(|e| ApiError::BadRequest(format!("invalid retry_after {v:?}: {e}")))?,
        ),
    };
    let scope = scope.as_ref().map(|Extension(Scope(s))| s.as_str());
    let settled = puller(&state)?.nack(id, nack.error.as_deref(), retry_after, scope).await?;
    Ok(settled_json(id, settled))
}

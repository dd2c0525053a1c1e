//! `/api/destinations` (CONTRACT §8): each destination of the config with its stored state and
//! backlog, and pause/resume. The state lives in the store, so it holds on every node and
//! survives restarts; a handler only reads or writes it.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::AdminState;
use super::api::rfc3339;
use super::error::ApiError;
use super::params::{Params, Q};
use crate::metrics::OUTCOMES;
use crate::store::{DeliveryStatus, millis};

/// `GET /api/destinations` takes no parameters.
const NO_PARAMS: &[&str] = &[];

async fn items(state: &AdminState, names: &[String]) -> Result<Vec<Value>, ApiError> {
    let states = state.store.destination_states(names).await?;
    let counts = state.store.count_by_destination(names).await?;
    let count =
        |d: &str, s: DeliveryStatus| counts.iter().find(|(n, st, _)| n == d && *st == s).map_or(0, |(_, _, n)| *n);
    Ok(states
        .iter()
        .map(|s| {
            let kind = state.destinations.iter().find(|(n, _)| *n == s.destination).map_or("", |(_, k)| *k);
            let d = s.destination.as_str();
            json!({
                "name": d,
                "type": kind,
                "state": s.shown(),
                "pending": count(d, DeliveryStatus::Pending),
                "in_flight": count(d, DeliveryStatus::InFlight),
                "failed": count(d, DeliveryStatus::Failed),
                "dead": count(d, DeliveryStatus::Dead),
                "last_error": s.last_error,
                "last_success_at": s.last_success_at.map(rfc3339),
            })
        })
        .collect())
}

pub async fn list(State(state): State<AdminState>, q: Q) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    let names: Vec<String> = state.destinations.iter().map(|(n, _)| n.clone()).collect();
    Ok(Json(json!({ "items": items(&state, &names).await? })))
}

/// The destination `name` of the config (the store keeps state only of those).
fn known(state: &AdminState, name: String) -> Result<String, ApiError> {
    if state.destinations.iter().any(|(n, _)| *n == name) {
        Ok(name)
    } else {
        Err(ApiError::NotFound(format!("no destination {name:?}")))
    }
}

async fn set(state: AdminState, name: String, paused: bool) -> Result<Json<Value>, ApiError> {
    let name = known(&state, name)?;
    state.store.set_paused(&name, paused).await?;
    tracing::info!(destination = %name, paused, "destination {}", if paused { "paused" } else { "resumed" });
    let mut item = items(&state, std::slice::from_ref(&name)).await?;
    Ok(Json(item.pop().unwrap_or(Value::Null)))
}

pub async fn pause(State(state): State<AdminState>, Path(name): Path<String>, q: Q) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    set(state, name, true).await
}

pub async fn resume(State(state): State<AdminState>, Path(name): Path<String>, q: Q) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    set(state, name, false).await
}

/// `GET /api/destinations/{name}/attempts` (an extension of CONTRACT §8, for the web UI's chart):
/// this process's attempts to the destination per minute and outcome over the last hour, oldest
/// minute first, every minute present (zeros included). Kept in memory (`metrics::Minutes`): a
/// restart starts it afresh, and on PostgreSQL each node counts its own.
pub async fn attempts(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    q: Q,
) -> Result<Json<Value>, ApiError> {
    Params::parse(q, NO_PARAMS)?;
    let name = known(&state, name)?;
    let items: Vec<Value> = state
        .metrics
        .attempts_per_minute(&name, millis(state.clock.now()))
        .into_iter()
        .map(|(minute, counts)| {
            let mut item = serde_json::Map::new();
            item.insert("minute".into(), json!(rfc3339(minute)));
            for (outcome, n) in OUTCOMES.iter().zip(counts) {
                item.insert((*outcome).into(), json!(n));
            }
            Value::Object(item)
        })
        .collect();
    Ok(Json(json!({ "destination": name, "items": items })))
}

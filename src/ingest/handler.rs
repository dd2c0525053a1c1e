//! One request, from socket to answer: route → method → body (bounded, timed) → verify →
//! dedupe key → store (commit) → 200.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::error::IngestError;
use super::{dedupe, redact};
use crate::config::{Config, Source};
use crate::store::{Enqueued, NewEvent, Store};
use crate::verify::Unverified;

/// What the ingest handlers share. Built once by the app; cheap to clone.
#[derive(Clone)]
pub struct IngestState {
    store: Arc<dyn Store>,
    sources: Arc<HashMap<String, Source>>,
    max_body_bytes: usize,
    body_timeout: Duration,
}

impl IngestState {
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Self {
        let sources = config.sources.iter().map(|s| (s.path.clone(), s.clone())).collect();
        IngestState {
            store,
            sources: Arc::new(sources),
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: config.server.request_timeout,
        }
    }
}

/// The ingest router: health checks plus every source path (matched exactly, not decoded).
pub fn router(state: IngestState, max_concurrent_requests: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(ingest)
        .layer(tower::limit::ConcurrencyLimitLayer::new(max_concurrent_requests))
        .layer(axum::middleware::from_fn(super::request_id_layer))
        .with_state(state)
}

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(State(state): State<IngestState>) -> Response {
    ready(&*state.store).await
}

/// 200 when storage answers, else 503.
pub async fn ready(store: &dyn Store) -> Response {
    match store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "unavailable", "error": "storage unavailable" })))
                .into_response()
        }
    }
}

async fn ingest(State(state): State<IngestState>, req: Request) -> Result<Response, IngestError> {
    let Some(source) = state.sources.get(req.uri().path()) else {
        return Err(IngestError::NotFound);
    };
    if req.method() != Method::POST {
        return Err(IngestError::MethodNotAllowed);
    }
    let (parts, body) = req.into_parts();
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        return Err(IngestError::TooLarge);
    }
    let body = read_body(body, state.max_body_bytes, state.body_timeout).await?;
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let unverified = Unverified { path_and_query, headers: parts.headers, body };
    let verified = unverified.verify(&source.verifier, SystemTime::now())?;
    let dedupe_key = dedupe::key(&source.dedupe, &source.name, &verified)?;
    let content_type = verified.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let event = NewEvent {
        verified: &verified,
        source: &source.name,
        dedupe_key,
        content_type,
        headers_json: redact::headers_json(verified.headers()),
        destinations: &source.deliver_to,
        received_at: SystemTime::now(),
    };
    let answer = match state.store.enqueue(event).await? {
        Enqueued::Queued { event_id } => {
            tracing::info!(source = %source.name, event_id = %event_id, bytes = verified.body().len(), "event queued");
            json!({ "status": "queued", "event_id": event_id })
        }
        Enqueued::Duplicate { event_id } => {
            tracing::info!(source = %source.name, event_id = %event_id, "duplicate acknowledged");
            json!({ "status": "duplicate", "event_id": event_id })
        }
    };
    Ok(Json(answer).into_response())
}

async fn read_body(body: axum::body::Body, limit: usize, timeout: Duration) -> Result<Bytes, IngestError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(IngestError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(IngestError::TooLarge),
        Ok(Err(e)) => Err(IngestError::BadBody(e.to_string())),
    }
}

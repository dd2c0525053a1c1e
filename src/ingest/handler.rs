//! One request, from socket to answer: route → method → rate limit → body (bounded, timed) →
//! verify → dedupe key → store (commit) → 200. Every answer is counted in the source's metrics.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use super::error::IngestError;
use super::{dedupe, redact};
use crate::config::{Config, RateLimit, Source};
use crate::metrics::{Metrics, SourceMetrics};
use crate::store::{Enqueued, NewEvent, Store, StoreError};
use crate::verify::Unverified;

/// A source with what its requests need at hand: its rate limiter and metric handles.
struct Route {
    source: Source,
    limiter: Option<DefaultDirectRateLimiter>,
    metrics: SourceMetrics,
}

/// What the ingest handlers share. Built once by the app; cheap to clone.
#[derive(Clone)]
pub struct IngestState {
    store: Arc<dyn Store>,
    routes: Arc<HashMap<String, Route>>,
    unmatched: metrics::Counter,
    max_body_bytes: usize,
    body_timeout: Duration,
}

impl IngestState {
    pub fn new(config: &Config, store: Arc<dyn Store>, metrics: &Metrics) -> Self {
        let routes = config
            .sources
            .iter()
            .map(|s| {
                let route =
                    Route { source: s.clone(), limiter: s.rate_limit.map(limiter), metrics: metrics.source(&s.name) };
                (s.path.clone(), route)
            })
            .collect();
        IngestState {
            store,
            routes: Arc::new(routes),
            unmatched: metrics.unmatched(),
            max_body_bytes: config.server.max_body_bytes,
            body_timeout: config.server.request_timeout,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
fn limiter(r: RateLimit) -> DefaultDirectRateLimiter {
    let per_second = NonZeroU32::new(r.per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(r.burst).unwrap_or(per_second);
    RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
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

/// 200 when the store can commit now, else 503 with a short `reason` (docs/ADMIN.md); the
/// details, which name files, go to the log only.
pub async fn ready(store: &dyn Store) -> Response {
    match store.ping().await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            let reason = match &e {
                StoreError::NotReady { reason, .. } => reason.as_str(),
                _ => "database_unavailable",
            };
            tracing::warn!(error = %e, reason, "not ready");
            let body = json!({ "status": "unavailable", "error": "storage unavailable", "reason": reason });
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn ingest(State(state): State<IngestState>, req: Request) -> Response {
    let Some(route) = state.routes.get(req.uri().path()) else {
        state.unmatched.increment(1);
        return IngestError::NotFound.into_response();
    };
    let started = Instant::now();
    let source = &route.source.name;
    let response = match accept(&state, route, req).await {
        Ok(Enqueued::Queued { event_id }) => {
            route.metrics.received();
            tracing::info!(source = %source, event_id = %event_id, "event queued");
            Json(Ack { status: "queued", event_id: &event_id }).into_response()
        }
        Ok(Enqueued::Duplicate { event_id }) => {
            route.metrics.duplicate();
            tracing::info!(source = %source, event_id = %event_id, "duplicate acknowledged");
            Json(Ack { status: "duplicate", event_id: &event_id }).into_response()
        }
        Err(e) => {
            route.metrics.reject(e.reason());
            e.into_response()
        }
    };
    route.metrics.took(started.elapsed());
    response
}

/// The answer to a stored event (CONTRACT §3).
#[derive(serde::Serialize)]
struct Ack<'a> {
    status: &'static str,
    event_id: &'a str,
}

/// Everything between routing and the answer; stores the event or says why not.
async fn accept(state: &IngestState, route: &Route, req: Request) -> Result<Enqueued, IngestError> {
    let source = &route.source;
    if req.method() != Method::POST {
        return Err(IngestError::MethodNotAllowed);
    }
    // Before the body is read: a flood costs us no more than its headers.
    if let Some(limiter) = &route.limiter
        && let Err(not_until) = limiter.check()
    {
        return Err(IngestError::RateLimited(not_until.wait_time_from(limiter.clock().now())));
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
        headers_json: redact::headers_json(verified.headers(), source.verifier.credential_header()),
        destinations: &source.deliver_to,
        received_at: SystemTime::now(),
    };
    Ok(state.store.enqueue(event).await?)
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

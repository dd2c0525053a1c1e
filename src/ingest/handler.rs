//! One request, from socket to answer: route → method → the client's failed verifications and
//! the source's rate limit (looked at, nothing taken) → a request slot (`admission.rs`) →
//! credential headers → body (bounded in size, time and memory: `body.rs`) → verify → a token
//! of the rate limit → dedupe key → store (commit) → 200. Every answer is counted in the
//! source's metrics. Only a verified request takes a token of the source's rate limit; a failed
//! one is charged to its client address instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{Method, header};

use super::admission::{Admission, ClientKey, Refused};
use super::body::{self, Budget};
use super::error::IngestError;
use super::limit::{Bucket, Keyed};
use super::{dedupe, handshake, redact};
use crate::clock::SharedClock;
use crate::config::{Config, Source};
use crate::http::{health, request_id_layer};
use crate::metrics::{Metrics, SourceMetrics};
use crate::routing::reads::Field;
use crate::routing::{self, document::Parts, pool::Pool};
use crate::store::{Enqueued, NewEvent, Planned, Store, new_event_id};
use crate::telemetry::traces;
use crate::verify::{Handshake, HandshakeError, Unverified, VerifyError};

/// Client addresses whose failed verifications one source tracks at most (see `limit::Keyed`).
const TRACKED_CLIENTS: usize = 65_536;

/// A source with what its requests need at hand: its rate limit, its clients' failed
/// verifications, its metric handles and, if it has any, its filters.
struct Route {
    source: Source,
    limiter: Option<Bucket>,
    failures: Keyed<ClientKey>,
    metrics: SourceMetrics,
    /// The filters (one per `deliver_to` entry; none when the source has no filter) and the
    /// destinations' ordering keys.
    programs: routing::Programs,
    /// `hookgate_deliveries_filtered_total`, one per `deliver_to` entry.
    filtered: Vec<metrics::Counter>,
}

/// What the ingest handlers share. Built once by the app, shared behind one `Arc`.
pub struct IngestState {
    store: Arc<dyn Store>,
    routes: Arc<HashMap<String, Route>>,
    unmatched: metrics::Counter,
    redaction: Arc<redact::Redaction>,
    clock: SharedClock,
    admission: Arc<Admission>,
    budget: Arc<Budget>,
    body_limits: body::Limits,
    /// The threads filters run on, when the config has expressions.
    routing: Option<Pool>,
    /// `[telemetry] otlp_endpoint` is set: each request gets a span, each event its trace.
    traces: bool,
}

impl IngestState {
    /// `routing` runs the filters; a config with filters needs it (`App::build` starts it).
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        metrics: &Metrics,
        clock: SharedClock,
        routing: Option<Pool>,
    ) -> Self {
        let routes = config
            .sources
            .iter()
            .map(|s| {
                let route = Route {
                    programs: config.programs(&s.routes, &s.deliver_to),
                    source: s.clone(),
                    limiter: s.rate_limit.map(Bucket::new),
                    failures: Keyed::new(config.server.verify_failures_per_client, TRACKED_CLIENTS),
                    metrics: metrics.source(&s.name, &IngestError::REASONS),
                    filtered: s.deliver_to.iter().map(|d| metrics.filtered(&s.name, d)).collect(),
                };
                (s.path.clone(), route)
            })
            .collect();
        let server = &config.server;
        IngestState {
            store,
            routes: Arc::new(routes),
            unmatched: metrics.unmatched(),
            redaction: Arc::new(redact::Redaction::new(&config.server.redact_headers)),
            clock,
            admission: Admission::new(
                server.max_concurrent_requests,
                server.max_requests_per_client,
                server.queue_timeout,
            ),
            budget: Budget::new(server.max_inflight_body_bytes, client_share(server)),
            body_limits: body::Limits {
                max_bytes: server.max_body_bytes,
                total: server.request_timeout,
                idle: server.body_idle_timeout,
            },
            routing,
            traces: config.telemetry.traces(),
        }
    }
}

/// The bytes of bodies one client address may hold: the budget's share that its slots are of
/// all slots, and never less than one body of `max_body_bytes`.
fn client_share(server: &crate::config::Server) -> usize {
    let share = server.max_inflight_body_bytes as u128 * server.max_requests_per_client as u128
        / server.max_concurrent_requests.max(1) as u128;
    usize::try_from(share).unwrap_or(usize::MAX).max(server.max_body_bytes).min(server.max_inflight_body_bytes)
}

/// The ingest router: health checks plus every source path (matched exactly, not decoded).
/// Requests to a source path take a slot of `[server] max_concurrent_requests`; health checks do not.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(readyz))
        .fallback(ingest)
        .layer(axum::middleware::from_fn(request_id_layer))
        // One `Arc`: axum clones the state for every request, and one count is cheaper than the
        // state's dozen (docs/PERFORMANCE.md, session 10).
        .with_state(Arc::new(state))
}

async fn readyz(State(state): State<Arc<IngestState>>) -> Response {
    health::ready(&*state.store).await
}

async fn ingest(State(state): State<Arc<IngestState>>, req: Request) -> Response {
    let Some(route) = state.routes.get(req.uri().path()) else {
        state.unmatched.increment(1);
        return IngestError::NotFound.into_response();
    };
    let started = Instant::now();
    let source = &route.source.name;
    let span = state.traces.then(|| traces::ingest_span(req.headers(), source, req.method()));
    let traceparent = span.as_ref().and_then(traces::traceparent);
    let mut stored = None;
    let response = match accept(&state, route, req, traceparent).await {
        Ok(Accepted::Stored(Enqueued::Queued { event_id })) => {
            route.metrics.received();
            tracing::info!(source = %source, event_id = %event_id, "event queued");
            if span.is_some() {
                stored = Some(("queued", event_id.clone()));
            }
            let json = Json(Ack { status: "queued", event_id: &event_id }).into_response();
            handshake::stored(route.source.response.as_ref(), json)
        }
        Ok(Accepted::Stored(Enqueued::Duplicate { event_id })) => {
            route.metrics.duplicate();
            tracing::info!(source = %source, event_id = %event_id, "duplicate acknowledged");
            if span.is_some() {
                stored = Some(("duplicate", event_id.clone()));
            }
            let json = Json(Ack { status: "duplicate", event_id: &event_id }).into_response();
            handshake::stored(route.source.response.as_ref(), json)
        }
        Ok(Accepted::Handshake(h)) => {
            route.metrics.handshake();
            tracing::info!(source = %source, "handshake answered");
            handshake::answer(h)
        }
        Err(e) => {
            route.metrics.reject(e.reason());
            if let Some(span) = &span {
                span.record("error.type", e.reason());
            }
            e.into_response()
        }
    };
    if let Some(span) = &span {
        traces::ingest_answered(span, stored.as_ref().map(|(s, id)| (*s, id.as_str())), response.status().as_u16());
    }
    route.metrics.took(started.elapsed());
    response
}

/// The answer to a stored event (CONTRACT §3).
#[derive(serde::Serialize)]
struct Ack<'a> {
    status: &'static str,
    event_id: &'a str,
}

/// What became of a request that was not refused.
enum Accepted {
    Stored(Enqueued),
    /// A provider's URL check, answered and not stored (`handshake.rs`).
    Handshake(Handshake),
}

/// Everything between routing and the answer; stores the event or says why not.
/// `traceparent`: the request's span, stored with the event for its attempts (traces on only).
async fn accept(
    state: &IngestState,
    route: &Route,
    req: Request,
    traceparent: Option<String>,
) -> Result<Accepted, IngestError> {
    let source = &route.source;
    let get_handshake = req.method() == Method::GET && source.verifier.answers_get();
    if req.method() != Method::POST && !get_handshake {
        return Err(IngestError::MethodNotAllowed);
    }
    // Before a slot is taken or the body read, refuse what would be refused after: a flood
    // costs us no more than its headers. Neither look takes anything.
    let client = ClientKey::of(&req);
    if let Some(c) = &client {
        route.failures.peek(c, Instant::now()).map_err(IngestError::VerifyLimited)?;
    }
    if let Some(limiter) = &route.limiter {
        limiter.peek(Instant::now()).map_err(IngestError::RateLimited)?;
    }
    let _slot = state.admission.admit(client).await.map_err(|r| match r {
        Refused::Client => IngestError::ClientBusy,
        Refused::Busy => IngestError::Busy,
    })?;
    let failed = |e: VerifyError| {
        if let Some(c) = client {
            route.failures.charge(c, Instant::now());
        }
        IngestError::Verify(e)
    };
    let (parts, body) = req.into_parts();
    // A token or password in a header is checked before the body is read.
    source.verifier.check_headers(&parts.headers).map_err(failed)?;
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (body, _reserved) = body::read(body, declared, state.body_limits, &state.budget, client).await?;
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let unverified = Unverified { path_and_query, headers: parts.headers, body };
    if let Some(answer) = handshake::check(&source.verifier, &parts.method, &unverified, state.clock.now()) {
        return match answer {
            Err(IngestError::Handshake(HandshakeError::Verify(e))) => {
                let _charged = failed(e.clone());
                Err(IngestError::Handshake(HandshakeError::Verify(e)))
            }
            other => other.map(Accepted::Handshake),
        };
    }
    let verified = unverified.verify(&source.verifier, state.clock.now()).map_err(failed)?;
    if let Some(limiter) = &route.limiter {
        limiter.take(Instant::now()).map_err(IngestError::RateLimited)?;
    }
    let dedupe_key = dedupe::key(&source.dedupe, &source.name, &verified)?;
    let content_type = verified.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let id = new_event_id();
    let credential = source.verifier.credential_header();
    let parts = |needs: &routing::reads::Needs| Parts {
        source: source.name.clone(),
        event_id: id.clone(),
        path_and_query: verified.path_and_query().to_string(),
        headers: match needs.field("headers") {
            None => Vec::new(),
            Some(Field::Whole) => state.redaction.document_headers(verified.headers(), credential),
            Some(Field::Only(names)) => {
                state.redaction.document_headers_where(verified.headers(), credential, |n| names.contains(n))
            }
        },
        content_type: content_type.clone(),
        body: verified.body().clone(),
    };
    let (verdicts, keys) = route.programs.run(state.routing.as_ref(), parts).await;
    let deliveries = Planned::routed(&source.deliver_to, &routing::planned(&source.deliver_to, &verdicts, &keys));
    let event = NewEvent {
        id,
        verified: &verified,
        source: &source.name,
        dedupe_key,
        content_type,
        headers_json: state.redaction.headers_json(verified.headers(), credential),
        deliveries,
        received_at: state.clock.now(),
        traceparent,
    };
    let enqueued = state.store.enqueue(event).await?;
    if matches!(enqueued, Enqueued::Queued { .. }) {
        for (i, v) in verdicts.iter().enumerate() {
            if let (Some(reason), Some(counter)) = (v.reason(), route.filtered.get(i)) {
                counter.increment(1);
                tracing::info!(source = %source.name, destination = %source.deliver_to[i], reason = %reason, "delivery filtered");
            }
        }
    }
    Ok(Accepted::Stored(enqueued))
}

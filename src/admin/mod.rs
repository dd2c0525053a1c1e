//! The admin listener: health checks (in every role), the operator API under `/api` (`api.rs`,
//! guarded by `auth.rs`; `pull.rs` the pull consumers' claim, ack and nack), Prometheus metrics at `/metrics`, and the web UI at `/` (`ui.html`).
//! Never served on the ingest port. Docs: docs/ADMIN.md; the API's description: docs/openapi.json.

pub mod api;
pub mod auth;
mod backup;
mod destinations;
mod error;
mod params;
mod pull;
mod reload;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderName, HeaderValue, header};

use crate::clock::SharedClock;
use crate::http::health;
use crate::http::request_id_layer;
use crate::metrics::Metrics;
use crate::secret::Secret;
use crate::store::Store;

pub(crate) const OPENAPI: &str = include_str!("../../docs/openapi.json");
const UI_HTML: &str = include_str!("ui.html");
const UI_JS: &str = include_str!("ui.js");

/// How long `/metrics` waits for the store's delivery counts before rendering without them.
const COUNT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// `None`: the API is open (allowed only on a loopback listener, see `App::build`).
    pub token: Option<Arc<Secret>>,
    pub clock: SharedClock,
    /// Each destination of the config with its `type`, in config order (`/api/destinations`).
    pub destinations: Arc<[(String, &'static str)]>,
    /// What `POST /api/reload` calls; `None` answers that there is nothing to reload.
    pub reload: Option<Arc<dyn Reload>>,
    /// The pull destinations' claims, acks and nacks, and their tokens (CONTRACT §10).
    pub pull: Option<Arc<crate::dispatch::Puller>>,
}

/// Reloading the config (implemented by `reload::Live`; the admin API only calls it).
pub trait Reload: Send + Sync {
    /// `Err` lists every problem of the new config; then nothing changed.
    fn reload(&self) -> futures::future::BoxFuture<'_, Result<(), Vec<String>>>;
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/events", get(api::list_events))
        .route("/events/{id}", get(api::get_event))
        .route("/events/{id}/replay", post(api::replay_event))
        .route("/deliveries", get(api::list_deliveries))
        .route("/deliveries/replay", post(api::replay_deliveries))
        .route("/backup", post(backup::backup))
        .route("/reload", post(reload::reload))
        .route("/destinations", get(destinations::list))
        .route("/destinations/{name}/pause", post(destinations::pause))
        .route("/destinations/{name}/resume", post(destinations::resume))
        .route("/destinations/{name}/claim", post(pull::claim))
        .route("/deliveries/{id}/ack", post(pull::ack))
        .route("/deliveries/{id}/nack", post(pull::nack))
        .route("/destinations/{name}/attempts", get(destinations::attempts))
        .route("/openapi.json", get(api::openapi))
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/", get(ui))
        .route("/ui.js", get(ui_js))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .fallback(api::not_found)
        .layer(axum::middleware::from_fn(request_id_layer))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    health::ready(&*state.store).await
}

/// Prometheus text format. The delivery gauges are counted in the store now, so they are exact
/// at every scrape (and shared by every node when the store is PostgreSQL).
async fn metrics(State(state): State<AdminState>) -> Response {
    match tokio::time::timeout(COUNT_TIMEOUT, state.store.count_by_status()).await {
        Ok(Ok(counts)) => state.metrics.set_deliveries(&counts),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot count deliveries for /metrics"),
        Err(_) => tracing::warn!("counting deliveries for /metrics timed out"),
    }
    let names: Vec<String> = state.destinations.iter().map(|(n, _)| n.clone()).collect();
    match tokio::time::timeout(COUNT_TIMEOUT, state.store.destination_states(&names)).await {
        Ok(Ok(states)) => {
            let shown: Vec<(String, &str)> = states.iter().map(|s| (s.destination.clone(), s.shown())).collect();
            state.metrics.set_destination_states(&shown);
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read destination states for /metrics"),
        Err(_) => tracing::warn!("reading destination states for /metrics timed out"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

/// Headers for the UI: nothing but our own script may run, nothing may frame it.
fn ui_headers(content_type: &'static str) -> [(HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; \
                 img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

async fn ui() -> Response {
    (ui_headers("text/html; charset=utf-8"), UI_HTML).into_response()
}

async fn ui_js() -> Response {
    (ui_headers("text/javascript; charset=utf-8"), UI_JS).into_response()
}

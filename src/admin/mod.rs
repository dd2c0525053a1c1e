//! The admin listener: health checks (in every role), and the operator API, metrics and UI.
//! Never served on the ingest port.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use crate::ingest::request_id_layer;
use crate::store::Store;

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<dyn Store>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(crate::ingest::healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn(request_id_layer))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    crate::ingest::ready(&*state.store).await
}

//! `/healthz` (the process runs) and `/readyz` (the store can commit now), served by both
//! listeners in every role.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::store::{Store, StoreError};

pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
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

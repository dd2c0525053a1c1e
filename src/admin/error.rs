//! The admin API's errors and their one HTTP mapping: 400 with the reason, 404, or 503 with the
//! cause in the log only.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// A pull destination's token used for another destination.
    #[error("{0}")]
    Forbidden(String),
    /// A nack of a delivery that is not claimed.
    #[error("{0}")]
    Conflict(String),
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
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            Self::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            Self::Store(e) => {
                tracing::error!(error = %e, "admin request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable".to_string())
            }
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

//! `POST /api/reload`: reload the config file, as SIGHUP does (`reload.rs` at the top level does
//! it). 200 `{"status":"reloaded"}`, or 400 `{"error":"invalid config","problems":[...]}` when the
//! new file has problems (then nothing changed).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::AdminState;

pub async fn reload(State(state): State<AdminState>) -> Response {
    let result = match &state.reload {
        Some(r) => r.reload().await,
        None => Err(vec!["this listener has no config to reload".to_string()]),
    };
    match result {
        Ok(()) => Json(json!({ "status": "reloaded" })).into_response(),
        Err(problems) => {
            (StatusCode::BAD_REQUEST, Json(json!({ "error": "invalid config", "problems": problems }))).into_response()
        }
    }
}

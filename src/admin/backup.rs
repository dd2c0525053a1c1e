//! `POST /api/backup {"path": "/abs/file.db"}`: an online backup of the database, written by the
//! serving process (which alone may open the embedded file: it holds an exclusive lock on it).
//! The handler checks the path and asks the store; the copy itself is the store's (`Store::backup`).

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;

/// The path must be absolute (the server's working directory is not the caller's), its directory
/// must exist and the file must not: a backup never overwrites anything.
pub async fn backup(
    State(state): State<AdminState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::BadRequest(format!("the body must be {{\"path\": \"...\"}}: {e}")))?;
    let path = match body.get("path").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            return Err(ApiError::BadRequest("path is required: the absolute path of the backup file to write".into()));
        }
    };
    if let Some(extra) = body.as_object().and_then(|o| o.keys().find(|k| *k != "path")) {
        return Err(ApiError::BadRequest(format!("unknown field {extra:?}; accepted: path")));
    }
    if !path.is_absolute() {
        return Err(ApiError::BadRequest(format!("path {} is not absolute", path.display())));
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(ApiError::BadRequest(format!("{} exists; a backup never overwrites a file", path.display())));
    }
    match path.parent().map(std::fs::metadata) {
        Some(Ok(m)) if m.is_dir() => {}
        _ => {
            return Err(ApiError::BadRequest(format!("the directory of {} does not exist", path.display())));
        }
    }
    let started = std::time::Instant::now();
    state.store.backup(&path).await?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    tracing::info!(path = %path.display(), bytes, took_ms = started.elapsed().as_millis() as u64, "backup written");
    Ok(Json(json!({ "status": "ok", "path": path.display().to_string(), "bytes": bytes })))
}

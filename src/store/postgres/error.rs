//! How PostgreSQL and pool errors become [`StoreError`]s.

use std::error::Error as _;

use deadpool_postgres::PoolError;

use crate::store::StoreError;

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// tokio-postgres errors print only their kind ("db error"); the cause says what happened.
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Unavailable(describe(&e))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => unavailable("timed out waiting for a database connection"),
            other => unavailable(other),
        }
    }
}

/// Why a batch was not written.
pub(super) enum BatchError {
    /// The database answered and refused the statement (bad data, deadlock): worth retrying the
    /// events one by one.
    Refused(String),
    /// No answer, or the database is going away: every event fails alike.
    Unavailable(StoreError),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        // SQLSTATE classes 08 (connection), 53 (resources), 57 (shutdown) and 58 (system) say
        // nothing about the events themselves.
        match e.code().map(|c| c.code().get(..2).unwrap_or("").to_string()) {
            Some(class) if !matches!(class.as_str(), "08" | "53" | "57" | "58") => BatchError::Refused(describe(&e)),
            _ => BatchError::Unavailable(e.into()),
        }
    }
}

impl From<PoolError> for BatchError {
    fn from(e: PoolError) -> Self {
        BatchError::Unavailable(e.into())
    }
}

impl From<BatchError> for StoreError {
    fn from(e: BatchError) -> Self {
        match e {
            BatchError::Refused(e) => StoreError::Unavailable(e),
            BatchError::Unavailable(e) => e,
        }
    }
}

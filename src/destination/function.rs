//! `rust`: an async function registered by name through the library API. A panic in the handler
//! is a failed attempt, not a dead worker.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Attempt, AttemptResult, Deliver};

/// An event as a Rust handler sees it.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event id (also `webhook-id` for http destinations); stable across attempts.
    pub id: String,
    /// The source's name.
    pub source: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The original Content-Type, if any.
    pub content_type: Option<String>,
    /// The request headers, with credentials and signatures redacted.
    pub headers: HashMap<String, String>,
    /// The raw body, exactly as received.
    pub body: Bytes,
}

impl Event {
    /// The body parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A handler's failure. Any error converts into one with `?` (like `anyhow::Error`, it is not
/// itself a `std::error::Error`). By default it is retried with backoff; [`HandlerError::permanent`] makes
/// the delivery dead at once.
#[derive(Debug, Clone)]
pub struct HandlerError {
    message: String,
    retry: bool,
}

impl HandlerError {
    /// A failure worth retrying (the default).
    pub fn retry(message: impl Into<String>) -> Self {
        HandlerError { message: message.into(), retry: true }
    }

    /// A failure that retrying cannot fix: the delivery goes straight to `dead`.
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError { message: message.into(), retry: false }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError::retry(e.to_string())
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// A registered handler.
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(Event) -> BoxFuture + Send + Sync>);

impl Handler {
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        Handler(Arc::new(move |e| Box::pin(f(e))))
    }
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler")
    }
}

pub struct FunctionDestination {
    handler: Handler,
    timeout: std::time::Duration,
}

impl FunctionDestination {
    pub fn new(handler: Handler, timeout: std::time::Duration) -> Self {
        FunctionDestination { handler, timeout }
    }
}

#[async_trait]
impl Deliver for FunctionDestination {
    async fn deliver(&self, a: &Attempt) -> AttemptResult {
        let event = Event {
            id: a.event_id.clone(),
            source: a.source.clone(),
            attempt: a.attempt,
            content_type: a.content_type.clone(),
            headers: serde_json::from_str(&a.headers_json).unwrap_or_default(),
            body: a.body.clone(),
        };
        // A task of its own, so a panic is caught as a JoinError rather than unwinding the worker.
        let task = tokio::spawn((self.handler.0)(event));
        let abort = task.abort_handle();
        match tokio::time::timeout(self.timeout, task).await {
            Err(_) => {
                abort.abort();
                AttemptResult {
                    timed_out: true,
                    error: Some(format!("handler timed out after {:?}", self.timeout)),
                    ..Default::default()
                }
            }
            Ok(Err(join)) if join.is_panic() => AttemptResult::failure("handler panicked"),
            Ok(Err(join)) => AttemptResult::failure(format!("handler task failed: {join}")),
            Ok(Ok(Ok(()))) => AttemptResult::success(),
            Ok(Ok(Err(e))) => AttemptResult { error: Some(e.message), permanent: !e.retry, ..Default::default() },
        }
    }
}

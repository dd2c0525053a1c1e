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
    /// The original Content-Type, if any (with a transform: the transformed body's).
    pub content_type: Option<String>,
    /// The request headers by lowercase name (repeated headers joined with ", "), with
    /// credentials and signatures replaced by `[redacted]`.
    pub headers: HashMap<String, String>,
    /// The raw body, exactly as received, or what the destination's transform made of it.
    pub body: Bytes,
}

impl Event {
    /// The body parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A handler's failure, recorded in the delivery's attempt log.
///
/// Any `std::error::Error` converts into one with `?`, keeping its causes in the message, and is
/// retried with backoff (like `anyhow::Error`, `HandlerError` is not itself a
/// `std::error::Error`, which is what makes that conversion possible).
/// [`HandlerError::permanent`] makes the delivery dead at once: use it when retrying cannot help.
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

    /// What went wrong, as the attempt log records it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`HandlerError::permanent`]: the delivery goes dead without retries.
    pub fn is_permanent(&self) -> bool {
        !self.retry
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for HandlerError {
    /// A retried failure whose message is `e` followed by its causes (`outer: inner: root`).
    fn from(e: E) -> Self {
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let text = c.to_string();
            // Some errors repeat their source in their own message; don't print it twice.
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = c.source();
        }
        HandlerError::retry(message)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

/// A registered handler: an async function of an [`Event`], type-erased so handlers of different
/// types can share a table.
#[derive(Clone)]
pub struct Handler(Arc<dyn Fn(Event) -> BoxFuture + Send + Sync>);

impl Handler {
    /// Wraps an async function (or a closure returning a future).
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

/// A `type = "rust"` destination: runs its handler in a task of its own, bounded by the timeout.
pub struct FunctionDestination {
    handler: Handler,
    timeout: std::time::Duration,
}

impl FunctionDestination {
    /// `handler`, with each attempt cut off after `timeout`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("syncing contact")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn question_mark_keeps_the_causes_and_retries() {
        let e: HandlerError = Outer(std::io::Error::other("connection refused")).into();
        assert_eq!(e.message(), "syncing contact: connection refused");
        assert!(!e.is_permanent());
        assert!(HandlerError::permanent("bad payload").is_permanent());
    }
}

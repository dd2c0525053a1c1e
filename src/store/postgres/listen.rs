//! Work notifications: one connection per delivering process LISTENs on [`CHANNEL`].

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use super::error::describe;
use super::tls;

/// The channel that says "new work may be due", and the statement that says it.
pub(super) const CHANNEL: &str = "hookgate_work";
pub(super) const NOTIFY: &str = "SELECT pg_notify('hookgate_work', '')";

/// Keeps one connection listening on [`CHANNEL`] and turns each notification into a wakeup.
/// Reconnects with backoff when the connection drops (database restart, network).
pub(super) async fn listen(
    connection: tls::Connection,
    wakeup: Arc<crate::store::wakeup::Wakeup>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let started = std::time::Instant::now();
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            r = listen_once(&connection, &wakeup) => r,
        };
        if started.elapsed() > Duration::from_secs(30) {
            failures = 0;
        }
        failures = failures.saturating_add(1);
        // Capped at the dispatcher's idle poll: waiting longer would not save anything.
        let wait = Duration::from_millis(250u64 << failures.min(5)).min(Duration::from_secs(5));
        tracing::warn!(error = %ended, retry_in_ms = wait.as_millis() as u64, "work notifications lost; reconnecting");
        // Whatever was notified while we were away is found by the next claim.
        wakeup.notify_one();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One listening session; returns why it ended.
pub(super) async fn listen_once(target: &tls::Connection, wakeup: &Arc<crate::store::wakeup::Wakeup>) -> String {
    let (client, mut connection) = match target.config.connect(target.tls.clone()).await {
        Ok(c) => c,
        Err(e) => return describe(&e),
    };
    let w = wakeup.clone();
    // Notifications arrive through the connection, so it is driven here rather than by `.await`.
    let mut driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(_)) => w.notify_one(),
                Ok(_) => {}
                Err(e) => return describe(&e),
            }
        }
        "connection closed".to_string()
    });
    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
        driver.abort();
        return describe(&e);
    }
    tracing::info!(channel = CHANNEL, "listening for work notifications");
    wakeup.notify_one();
    let why = (&mut driver).await.unwrap_or_else(|e| e.to_string());
    drop(client);
    why
}

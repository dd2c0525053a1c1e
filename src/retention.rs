//! Retention: events older than `storage.retention` whose deliveries have all finished (succeeded
//! or dead) are deleted, with their deliveries and attempt logs. Unfinished work is never purged,
//! however old.
//!
//! Runs in every process that runs delivery workers (`--role worker` and `all`): one always exists
//! where events are delivered, and ingest nodes stay lean. Deletes go in small batches with a pause
//! between them, so the store's writer (and so ingest) is never held for long.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::SharedClock;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError, millis};

/// Events deleted per store call.
pub const BATCH: usize = 500;
/// Pause between batches, so ingest commits interleave with the purge.
const PAUSE: Duration = Duration::from_millis(100);

/// How often to look for expired events: a tenth of the retention, between 1 s and 10 min.
pub fn interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Purges every `interval(retention)` until `stop`.
pub async fn run(store: Arc<dyn Store>, retention: Duration, clock: SharedClock, stop: CancellationToken) {
    let every = interval(retention);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = purge_expired(&*store, retention, clock.now(), &stop).await {
            tracing::warn!(error = %e, "retention purge failed; will try again");
        }
    }
}

/// Deletes, batch by batch, the finished events received before `now - retention`. Returns how
/// many were deleted. Stops early (between batches) when `stop` is cancelled.
pub async fn purge_expired(
    store: &dyn Store,
    retention: Duration,
    now: SystemTime,
    stop: &CancellationToken,
) -> Result<u64, StoreError> {
    let cutoff = millis(now).saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    let mut total = 0;
    loop {
        let n = store.purge(cutoff, BATCH).await?;
        total += n;
        if n < BATCH as u64 || stop.is_cancelled() {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(PAUSE) => {}
        }
    }
    if total > 0 {
        tracing::info!(purged = total, retention_s = retention.as_secs(), "purged finished events past retention");
    } else {
        tracing::debug!("retention: nothing to purge");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_a_tenth_of_retention_within_bounds() {
        assert_eq!(interval(Duration::from_secs(7 * 86400)), Duration::from_secs(600));
        assert_eq!(interval(Duration::from_secs(3000)), Duration::from_secs(300));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(1));
    }
}

//! The checkpoint thread: copies the WAL into the database file in the background, so that
//! checkpoints never stall the writer's commits.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::health::Health;
use super::*;

/// Runs a PASSIVE checkpoint every 200 ms: it never blocks the writer, and once a checkpoint has
/// caught up SQLite reuses the WAL from its start, so the file does not grow without bound.
///
/// Under load a pass never reaches the end of the WAL (the writer keeps appending), and SQLite
/// only fsyncs the database file after a pass that does. So each pass is followed by an fsync of
/// the database file here, and only then is `backfilled` set: the writer's own catch-up (see
/// `writer`) is left with the frames written during the last pass, not with an fsync of
/// everything copied since the last catch-up (10-30 ms under full load, a stall for every request).
/// It stops when the returned sender is dropped (with the store).
pub(super) fn spawn_checkpointer(
    path: &Path,
    backfilled: Arc<AtomicBool>,
    health: Arc<Health>,
) -> rusqlite::Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new().name("sqlite-checkpt".into()).spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_millis(200)) {
            // A damaged file is kept as it is for recovery; its WAL stays beside it.
            if health.is_corrupt() {
                continue;
            }
            // A long pass is followed by a short one, for what was written during it.
            let mut passes = 0;
            let synced = loop {
                let started = std::time::Instant::now();
                let passed = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = &passed {
                    health.observe(e);
                }
                match passed.map_err(|e| e.to_string()).and_then(|()| health.sync_data().map_err(|e| e.to_string())) {
                    Ok(()) => passes += 1,
                    Err(e) => break Err(e),
                }
                if passes == 3 || started.elapsed() < Duration::from_millis(5) {
                    break Ok(());
                }
            };
            match synced {
                Ok(()) => backfilled.store(true, Ordering::Release),
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
        }
    });
    spawned.map(|thread| (stop, thread)).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

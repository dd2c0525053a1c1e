//! The embedded store's one-owner lock: an exclusive flock on the database file itself.
//!
//! Why the lock is on the database file and not on a side file: a side file can be deleted, and
//! the next process then takes it and opens the same database (and re-queues the first one's
//! deliveries). SQLite locks the same file with POSIX byte-range locks (fcntl); on Linux, flock(2)
//! locks are independent of those, so the two never collide (`faults::` tests it with two real
//! processes). Not on NFS, where Linux emulates flock with fcntl locks (SQLite on NFS is unsafe
//! anyway).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::StoreError;

/// How long opening waits for the lock: a store of this same process that was just dropped
/// releases it once its threads have stopped, a few ms later (a restart in the same process).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Opens the database file (creating it empty if missing: SQLite takes an empty file as a new
/// database) and takes the one-owner lock on it, an exclusive flock.
///
/// The returned file must stay open as long as any SQLite connection to it is open in this
/// process: closing any descriptor of a file drops every POSIX lock the process holds on it,
/// SQLite's own included.
pub(super) fn lock(path: &Path) -> Result<File, StoreError> {
    let unavailable = StoreError::Unavailable;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644) // what SQLite gives the files it creates (before the umask)
        .open(path)
        .map_err(|e| unavailable(format!("cannot open {}: {e}", path.display())))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(unavailable(format!(
                    "{} is in use by another hookgate process (the embedded store has one owner; use PostgreSQL to run several)",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(unavailable(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

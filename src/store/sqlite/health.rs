//! Whether the embedded store can still commit where it should. Owns the database file's own
//! descriptor (its flock is the one-owner lock), the watchdog that notices the file deleted or
//! replaced, the failed state that a lost file or corruption latches (only a restart clears it),
//! the outcome of the last commit (a failed one, or a synced one that succeeded), and the
//! integrity check at start (its only SQL). `sqlite/mod.rs` reports SQLite's errors here.
//!
//! Why the lock is on the database file and not on a side file: a side file can be deleted, and
//! the next process then takes it and opens the same database (and re-queues the first one's
//! deliveries). SQLite locks the same file with POSIX byte-range locks (fcntl); on Linux, flock(2)
//! locks are independent of those, so the two never collide (`faults::` tests it with two real
//! processes). Not on NFS, where Linux emulates flock with fcntl locks (SQLite on NFS is unsafe
//! anyway).

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

use super::{StoreError, Unready};

/// How often the watchdog looks at the files; the writer also looks after every commit.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long after a failed commit `/readyz` first tries one of its own, and then at most how
/// often: a disk with room for a one-page probe but not for events would otherwise flip the
/// node in and out of its load balancer at the probes' rate.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long opening waits for the lock: a store of this same process that was just dropped
/// releases it once its threads have stopped, a few ms later (a restart in the same process).
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Where recovery is described; every message about a lost or corrupt file points there.
pub(super) const RECOVERY: &str = "docs/RELIABILITY.md, \"Recovering the embedded database\"";

/// Opens the database file (creating it empty if missing: SQLite takes an empty file as a new
/// database) and takes the one-owner lock on it, an exclusive flock.
///
/// The returned file must stay open as long as any SQLite connection to it is open in this
/// process: closing any descriptor of a file drops every POSIX lock the process holds on it,
/// SQLite's own included. [`Health`] keeps it, and the writer thread drops it last.
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

/// An error opening the database; one that says it is damaged tells how to recover it.
pub(super) fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match Verdict::of(&e) {
        Verdict::Corrupt(error) => corrupt_at_start(path, &error),
        _ => StoreError::Unavailable(format!("cannot open {}: {e}", path.display())),
    }
}

fn corrupt_at_start(path: &Path, problems: &str) -> StoreError {
    let p = path.display();
    StoreError::Unavailable(format!(
        "{p} is corrupt ({problems}); hookgate does not write to a damaged database. Stop here, keep a copy of \
         {p} and its -wal file, and recover the events with `sqlite3 {p} .recover | sqlite3 recovered.db` \
         as {RECOVERY} describes"
    ))
}

/// `PRAGMA quick_check` at start: a damaged file is refused before anything is written to it
/// (its cost grows with the file, see docs/RELIABILITY.md).
pub(super) fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| open_error(path, e))?;
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(file = %path.display(), took_ms, "database checked (quick_check)");
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(corrupt_at_start(path, &format!("quick_check: {}", problems.join("; ").replace('\n', " ")))),
    }
}

/// What a SQLite error says about the database, beyond the statement that got it. Ordered: a
/// batch reports the worst of its errors.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Verdict {
    /// Nothing, or the statement's own failure (a constraint): the database is fine.
    Fine,
    /// The database could not write (disk full, I/O error, busy past the timeout).
    CannotWrite(String),
    /// The database is damaged.
    Corrupt(String),
}

impl Verdict {
    pub(super) fn of(e: &rusqlite::Error) -> Verdict {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Verdict::Corrupt(e.to_string()),
            Some(ErrorCode::ConstraintViolation) | None => Verdict::Fine,
            Some(_) => Verdict::CannotWrite(e.to_string()),
        }
    }

    /// The worse of the two.
    pub(super) fn and(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

/// A file the store depends on, as it was when the store opened it.
struct Watched {
    path: PathBuf,
    /// "database file", "write-ahead log", "shared-memory index".
    what: &'static str,
    dev: u64,
    ino: u64,
}

pub(super) struct Health {
    path: PathBuf,
    /// The database file, locked (see [`lock`]). Its fstat tells whether it was unlinked. Taken
    /// (closed, unlocking the file) by [`Health::release`].
    file: Mutex<Option<File>>,
    watched: Vec<Watched>,
    /// Set once, by the first failure noticed; never cleared.
    failed: OnceLock<(Unready, String)>,
    /// Why the last commit failed, and when, while it did.
    commit_failed: Mutex<Option<(String, Instant)>>,
}

impl Health {
    /// Records what the store's files are now: `file` (the locked database file) and, if they
    /// exist, its WAL and shared-memory index (SQLite keeps both while a connection is open; one
    /// deleted or replaced under it splits the database between processes just the same).
    pub(super) fn new(path: &Path, file: File) -> std::io::Result<Health> {
        let meta = file.metadata()?;
        let mut watched =
            vec![Watched { path: path.to_path_buf(), what: "database file", dev: meta.dev(), ino: meta.ino() }];
        for (suffix, what) in [("-wal", "write-ahead log"), ("-shm", "shared-memory index")] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = PathBuf::from(side);
            if let Ok(m) = std::fs::metadata(&side) {
                watched.push(Watched { path: side, what, dev: m.dev(), ino: m.ino() });
            }
        }
        Ok(Health {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            watched,
            failed: OnceLock::new(),
            commit_failed: Mutex::new(None),
        })
    }

    /// Before a commit is acknowledged: one fstat of the open database file, whose link count
    /// drops to 0 when the path is deleted or another file is renamed over it; only then the full
    /// [`Health::look`] says which. The watchdog and `/readyz` look at every file by path.
    pub(super) fn look_at_commit(&self) {
        let unlinked = {
            let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            file.as_ref().and_then(|f| f.metadata().ok()).is_some_and(|m| m.nlink() == 0)
        };
        if unlinked {
            self.look();
        }
    }

    /// Looks at the files now; latches the failed state if one is gone or another file took its
    /// place. A few stat calls: for the watchdog and every `/readyz`.
    pub(super) fn look(&self) {
        if let Some((reason, detail)) = self.inspect() {
            self.fail(reason, detail);
        }
    }

    fn inspect(&self) -> Option<(Unready, String)> {
        // Released: the store is closed, and SQLite deleted its WAL as it should.
        if self.has_failed() || self.file.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return None;
        }
        // "the database file X", or "the write-ahead log X-wal of X".
        let which = |w: &Watched| match w.path == self.path {
            true => format!("the {} {}", w.what, w.path.display()),
            false => format!("the {} {} of {}", w.what, w.path.display(), self.path.display()),
        };
        for w in &self.watched {
            match std::fs::metadata(&w.path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Some((Unready::Deleted, format!("{} was deleted", which(w))));
                }
                // Unreadable for a moment (permissions, I/O): not evidence of a loss.
                Err(_) => {}
                Ok(m) if (m.dev(), m.ino()) != (w.dev, w.ino) => {
                    return Some((Unready::Replaced, format!("{} was replaced by another file", which(w))));
                }
                Ok(_) => {}
            }
        }
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.as_ref().map(File::metadata) {
            None => None,
            Some(Ok(m)) if m.nlink() == 0 => {
                Some((Unready::Deleted, format!("the database file {} was deleted", self.path.display())))
            }
            _ => None,
        }
    }

    /// Latches the failed state (the first reason wins) and says so, loudly, once.
    fn fail(&self, reason: Unready, detail: String) {
        if self.failed.set((reason, detail.clone())).is_err() {
            return;
        }
        let consequence = match reason {
            Unready::Corrupt => "hookgate commits nothing more to it",
            _ => "events stored before are still delivered while this process runs, from the open file",
        };
        tracing::error!(
            file = %self.path.display(),
            reason = reason.as_str(),
            "{detail}: ingest and /readyz answer 503 until a restart; {consequence}. Before restarting, see {RECOVERY}"
        );
    }

    /// Notes what an error from any statement (writer, readers, checkpointer) says about the
    /// database: corruption latches the failed state.
    pub(super) fn observe(&self, e: &rusqlite::Error) {
        if let Verdict::Corrupt(error) = Verdict::of(e) {
            self.corrupt(error);
        }
    }

    fn corrupt(&self, error: String) {
        self.fail(Unready::Corrupt, format!("the database {} is corrupt ({error})", self.path.display()));
    }

    /// Records how the writer's last batch ended (the writer reports a success only of a synced
    /// commit that wrote, see `writer::commit`).
    pub(super) fn committed(&self, verdict: Verdict) {
        let mut failed = self.commit_failed.lock().unwrap_or_else(|p| p.into_inner());
        match verdict {
            Verdict::Fine => {
                if failed.take().is_some() {
                    tracing::info!(file = %self.path.display(), "commits succeed again");
                }
            }
            Verdict::CannotWrite(error) => {
                if failed.is_none() {
                    tracing::error!(file = %self.path.display(), error = %error, "commit failed; /readyz answers 503 until one succeeds");
                }
                *failed = Some((error, Instant::now()));
            }
            Verdict::Corrupt(error) => {
                *failed = Some((error.clone(), Instant::now()));
                drop(failed);
                self.corrupt(error);
            }
        }
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failed.get().is_some()
    }

    /// The latched failure, if any.
    pub(super) fn failure(&self) -> Option<StoreError> {
        self.failed.get().map(|(reason, detail)| StoreError::NotReady { reason: *reason, detail: detail.clone() })
    }

    /// Whether the failed state refuses a write: every write to a corrupt database (writing
    /// could spread the damage, and recovery wants the file as it is), and only new events to a
    /// file deleted or replaced (claims and attempt records still go to the open file, so what
    /// was acknowledged before keeps being delivered until the restart).
    pub(super) fn refusal(&self, adds_event: bool) -> Option<StoreError> {
        let (reason, detail) = self.failed.get()?;
        (adds_event || self.is_corrupt()).then(|| StoreError::NotReady { reason: *reason, detail: detail.clone() })
    }

    /// Whether nothing at all may be written: the database is corrupt.
    pub(super) fn is_corrupt(&self) -> bool {
        matches!(self.failed.get(), Some((Unready::Corrupt, _)))
    }

    /// Whether the path no longer leads to the open database: a new connection would open
    /// another file, or none.
    pub(super) fn file_lost(&self) -> bool {
        matches!(self.failed.get(), Some((Unready::Deleted | Unready::Replaced, _)))
    }

    /// Why the last commit failed, while it did.
    pub(super) fn commit_failing(&self) -> Option<StoreError> {
        let failed = self.commit_failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.as_ref().map(|(e, _)| StoreError::NotReady {
            reason: Unready::CommitFailing,
            detail: format!("the last commit to {} failed: {e}", self.path.display()),
        })
    }

    /// Whether the last commit failed at least [`PROBE_AFTER`] ago: time to try one.
    pub(super) fn probe_due(&self) -> bool {
        let failed = self.commit_failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.as_ref().is_some_and(|(_, at)| at.elapsed() >= PROBE_AFTER)
    }

    /// fsyncs the database file (the checkpointer's), through the descriptor that holds the lock:
    /// a descriptor of its own, closed with its thread, would drop this process's SQLite locks.
    pub(super) fn sync_data(&self) -> std::io::Result<()> {
        match &*self.file.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(file) => file.sync_data(),
            None => Err(std::io::Error::other("the store is closed")),
        }
    }

    /// Closes the locked descriptor, releasing the one-owner lock. Only once no connection of
    /// this store is open (see [`lock`]); it stops watching the files.
    pub(super) fn release(&self) {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Looks at the files every [`WATCH_EVERY`] until the failed state is set or the returned
/// sender is dropped (with the store, before the writer's connection closes: SQLite deletes
/// the WAL when its last connection closes, which must not read as a loss).
pub(super) fn spawn_watchdog(
    health: Arc<Health>,
) -> std::io::Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    use std::sync::mpsc::{RecvTimeoutError, TryRecvError, channel};
    let (stop, stopped) = channel::<()>();
    let thread = std::thread::Builder::new().name("sqlite-watch".into()).spawn(move || {
        while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(WATCH_EVERY) {
            if let Some((reason, detail)) = health.inspect() {
                // Seen after the store was dropped: SQLite's own cleanup, not a loss.
                if let Err(TryRecvError::Disconnected) = stopped.try_recv() {
                    return;
                }
                health.fail(reason, detail);
            }
            if health.has_failed() {
                return;
            }
        }
    })?;
    Ok((stop, thread))
}

//! The threads expressions run on: a few with large stacks, so that a deep recursion reaches the
//! meter's stack limit (`engine::Limits::stack`) long before the end of its stack, and so that a
//! run never blocks a tokio worker for longer than its limits allow. Callers await the answer.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Stack of each thread: twice the default stack limit of a run.
pub const STACK_BYTES: usize = 64 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the threads; cheap to clone. The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct Pool {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("routing::Pool")
    }
}

impl Pool {
    /// Starts `threads` threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<Pool> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("hookgate-jq-{i}")).stack_size(STACK_BYTES).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job, never while one runs.
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A job that panics loses its answer (the caller sees `None`), not the thread.
                        Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Pool { jobs })
    }

    /// As many threads as the machine has cores.
    pub fn for_this_machine() -> std::io::Result<Pool> {
        Pool::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }

    /// Runs `f` on one of the threads and returns its result; `None` if `f` panicked.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }

    /// Runs `f` on one of the threads and waits for it, for callers outside a runtime.
    pub fn run_blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.recv().ok()
    }
}

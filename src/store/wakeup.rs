//! The store's signal that work may be due (a new event, a replay, a resumed destination, another
//! node's NOTIFY). Two kinds of listener take it: the dispatcher, one `Notify` permit that its loop
//! consumes, and any number of pull consumers' long polls, which watch a counter (every waiter
//! sees every signal; a burst of signals is one change to a waiter that was busy).

use std::sync::Arc;

use tokio::sync::{Notify, watch};

pub struct Wakeup {
    notify: Arc<Notify>,
    seen: watch::Sender<u64>,
}

impl Wakeup {
    pub fn new() -> Arc<Wakeup> {
        Arc::new(Wakeup { notify: Arc::new(Notify::new()), seen: watch::Sender::new(0) })
    }

    /// Signals both: the dispatcher's permit and every watcher.
    pub fn notify_one(&self) {
        self.notify.notify_one();
        self.seen.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The dispatcher's side.
    pub fn notify(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// A watcher's side: `changed()` resolves after the next signal.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.seen.subscribe()
    }
}

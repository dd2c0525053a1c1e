//! A broker destination's connection, kept across attempts: the first attempt that needs it
//! connects (others wait for that one, never open their own), and an attempt that finds it broken
//! says so ([`Link::lost`]), so that the next one connects again. Each connection is numbered, so
//! that a late report about an old one cannot throw away its replacement.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

pub struct Link<C> {
    current: Mutex<Option<(u64, C)>>,
    /// Held while connecting: one connection attempt at a time.
    connecting: tokio::sync::Mutex<u64>,
}

impl<C: Clone> Default for Link<C> {
    fn default() -> Self {
        Link { current: Mutex::new(None), connecting: tokio::sync::Mutex::new(0) }
    }
}

impl<C: Clone> Link<C> {
    /// The connection if there is one that `usable` accepts, else a new one from `connect`.
    pub async fn get<F, Fut>(&self, usable: impl Fn(&C) -> bool, connect: F) -> Result<(u64, C), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<C, String>>,
    {
        if let Some(c) = self.usable(&usable) {
            return Ok(c);
        }
        let mut count = self.connecting.lock().await;
        // Another attempt may have connected while this one waited.
        if let Some(c) = self.usable(&usable) {
            return Ok(c);
        }
        let c = connect().await?;
        *count += 1;
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some((*count, c.clone()));
        Ok((*count, c))
    }

    fn usable(&self, usable: &impl Fn(&C) -> bool) -> Option<(u64, C)> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match current.as_ref() {
            Some((n, c)) if usable(c) => Some((*n, c.clone())),
            Some(_) => {
                *current = None;
                None
            }
            None => None,
        }
    }

    /// Connection `n` is broken: the next attempt connects again (unless it already has).
    pub fn lost(&self, n: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(m, _)| *m == n) {
            *current = None;
        }
    }
}

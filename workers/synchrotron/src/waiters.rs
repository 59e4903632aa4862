//! Parked long-polls, one wake-up signal per user.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Waiters {
    by_user: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Waiters {
    /// The signal a user's long-polls wait on.
    pub(crate) fn signal(&self, user_id: &str) -> Arc<Notify> {
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(by_user.entry(user_id.to_owned()).or_default())
    }

    pub(crate) fn wake(&self, user_id: &str) {
        let by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(signal) = by_user.get(user_id) {
            signal.notify_waiters();
        }
    }

    pub(crate) fn wake_everyone(&self) {
        let by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for signal in by_user.values() {
            signal.notify_waiters();
        }
    }

    /// Drops signals nobody waits on, so the map does not grow forever.
    pub(crate) fn forget_idle(&self) {
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        by_user.retain(|_, signal| Arc::strong_count(signal) > 1);
    }
}

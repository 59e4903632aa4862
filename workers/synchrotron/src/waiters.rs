//! Parked long-polls, one wake-up signal per user.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What woke a user's long-polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum News {
    /// News complete in itself: a room event, a receipt, typing.
    Single,
    /// News that tends to come in a burst: an encrypting client's device
    /// keys and room keys (to-device), then its message. A woken long-poll
    /// waits a moment for the rest, to answer once instead of once each.
    Burst,
}

/// A user's wake-up signal.
#[derive(Default)]
pub(crate) struct Signal {
    notify: Notify,
    /// How many wake-ups were for news that comes in bursts.
    bursts: AtomicU64,
}

impl Signal {
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// A count that changes with each wake-up for a burst: compared before
    /// and after a wait, it tells whether one rang.
    pub(crate) fn bursts(&self) -> u64 {
        self.bursts.load(Ordering::SeqCst)
    }

    fn wake(&self, news: News) {
        if news == News::Burst {
            self.bursts.fetch_add(1, Ordering::SeqCst);
        }
        self.notify.notify_waiters();
    }
}

#[derive(Default)]
pub(crate) struct Waiters {
    by_user: Mutex<HashMap<String, Arc<Signal>>>,
}

impl Waiters {
    /// The signal a user's long-polls wait on.
    pub(crate) fn signal(&self, user_id: &str) -> Arc<Signal> {
        let mut by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(by_user.entry(user_id.to_owned()).or_default())
    }

    pub(crate) fn wake(&self, user_id: &str, news: News) {
        let by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(signal) = by_user.get(user_id) {
            signal.wake(news);
        }
    }

    pub(crate) fn wake_everyone(&self) {
        let by_user = self
            .by_user
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for signal in by_user.values() {
            signal.wake(News::Single);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_told_apart_from_single_news() {
        let waiters = Waiters::default();
        let signal = waiters.signal("@a:hs");
        let before = signal.bursts();
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        waiters.wake("@a:hs", News::Single);
        woken.await;
        assert_eq!(signal.bursts(), before, "a room event is no burst");

        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        waiters.wake("@a:hs", News::Burst);
        woken.await;
        assert_ne!(signal.bursts(), before, "to-device news is");
    }
}

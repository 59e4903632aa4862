//! What this role reads from the bus: persisted events, to wake waiters.

use std::sync::Arc;
use std::time::Duration;

use myelin_bus::messages::{self, PersistedEvent};
use myelin_bus::subjects;
use myelin_process::Shutdown;

use crate::Synchrotron;

/// Waiters re-check the store this often even without a wake-up, so a lost
/// bus message delays an event by at most this long.
const BACKSTOP: Duration = Duration::from_secs(5);

pub(crate) async fn wake_on_persisted_events(
    sync: Arc<Synchrotron>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut persisted = sync.bus.subscribe(subjects::ALL_PERSISTED_EVENTS).await?;
    let mut backstop = tokio::time::interval(BACKSTOP);
    loop {
        tokio::select! {
            () = shutdown.wait() => {
                sync.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                sync.waiters.wake_everyone();
                return Ok(());
            }
            _ = backstop.tick() => {
                sync.waiters.forget_idle();
                sync.waiters.wake_everyone();
            }
            message = persisted.next() => {
                let Some(message) = message else {
                    anyhow::bail!("the bus closed the persisted-events subscription");
                };
                match messages::decode::<PersistedEvent>(&message.payload) {
                    Ok(event) => sync.on_persisted(&event).await,
                    Err(error) => tracing::warn!(%error, "unreadable persisted-event message"),
                }
            }
        }
    }
}

impl Synchrotron {
    async fn on_persisted(&self, event: &PersistedEvent) {
        if let (Some(target), Some(membership)) = (&event.state_key, &event.membership) {
            self.members.apply(&event.room_id, target, membership);
            self.waiters.wake(target);
        }
        match self.members.of(self.store.as_ref(), &event.room_id).await {
            Ok(members) => members.iter().for_each(|user| self.waiters.wake(user)),
            Err(error) => {
                tracing::warn!(%error, "cannot read room members; waking everyone");
                self.members.clear();
                self.waiters.wake_everyone();
            }
        }
    }
}

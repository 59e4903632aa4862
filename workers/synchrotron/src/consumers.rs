//! What this role reads from the bus: a bell per stream, to wake the
//! long-polls of the users a change concerns. The store stays the truth.

use std::sync::Arc;
use std::time::Duration;

use myelin_bus::messages::{self, PersistedEvent};
use myelin_bus::subjects;
use myelin_bus::topics::{
    self, AccountDataChanged, DeviceListChanged, PresenceChanged, ReceiptChanged, ToDeviceQueued,
    TypingChanged,
};
use myelin_process::Shutdown;
use myelin_types::now_millis;

use crate::Synchrotron;
use crate::waiters::News;

/// Waiters re-check the store this often even without a wake-up, so a lost
/// bus message delays a change by at most this long.
const BACKSTOP: Duration = Duration::from_secs(5);
/// How often typing notices are checked for their end, and acknowledged
/// to-device inboxes emptied.
const TYPING_TICK: Duration = Duration::from_secs(1);

pub(crate) async fn wake_on_changes(
    sync: Arc<Synchrotron>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut persisted = sync.bus.subscribe(subjects::ALL_PERSISTED_EVENTS).await?;
    let mut account_data = topics::ACCOUNT_DATA.subscribe(sync.bus.as_ref()).await?;
    let mut receipts = topics::RECEIPTS.subscribe(sync.bus.as_ref()).await?;
    let mut typing = topics::TYPING.subscribe(sync.bus.as_ref()).await?;
    let mut presence = topics::PRESENCE.subscribe(sync.bus.as_ref()).await?;
    let mut to_device = topics::TO_DEVICE.subscribe(sync.bus.as_ref()).await?;
    let mut device_lists = topics::DEVICE_LISTS.subscribe(sync.bus.as_ref()).await?;
    // Subscribed first, so no notice falls between the read and the feed.
    sync.learn_typing().await;
    let mut backstop = tokio::time::interval(BACKSTOP);
    let mut typing_tick = tokio::time::interval(TYPING_TICK);
    let mut presence_tick = tokio::time::interval(sync.presence_timing.tick());
    loop {
        tokio::select! {
            () = shutdown.wait() => {
                sync.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                sync.waiters.wake_everyone();
                sync.to_device_acks.flush(sync.store.as_ref()).await;
                return Ok(());
            }
            _ = backstop.tick() => {
                sync.waiters.forget_idle();
                sync.positions.changed();
                sync.waiters.wake_everyone();
            }
            _ = typing_tick.tick() => {
                for room_id in sync.typing.expire(now_millis()) {
                    sync.wake_room(&room_id, News::Single).await;
                }
                sync.to_device_acks.flush(sync.store.as_ref()).await;
            }
            _ = presence_tick.tick() => sync.keep_presence().await,
            message = persisted.next() => {
                let Some(message) = message else {
                    anyhow::bail!("the bus closed the persisted-events subscription");
                };
                match messages::decode::<PersistedEvent>(&message.payload) {
                    Ok(event) => sync.on_persisted(&event).await,
                    Err(error) => tracing::warn!(%error, "unreadable persisted-event message"),
                }
            }
            change = account_data.next() => {
                let Some(AccountDataChanged { user_id, .. }) = change else {
                    anyhow::bail!("the bus closed the account-data subscription");
                };
                sync.positions.changed();
                sync.waiters.wake(&user_id, News::Single);
            }
            change = receipts.next() => {
                let Some(ReceiptChanged { room_id, user_id, private, .. }) = change else {
                    anyhow::bail!("the bus closed the receipts subscription");
                };
                sync.positions.changed();
                if private {
                    sync.waiters.wake(&user_id, News::Single);
                } else {
                    sync.wake_room(&room_id, News::Single).await;
                }
            }
            change = presence.next() => {
                let Some(PresenceChanged { user_id, .. }) = change else {
                    anyhow::bail!("the bus closed the presence subscription");
                };
                sync.activity.forget(&user_id);
                sync.positions.changed();
                sync.wake_sharing_a_room_with(&user_id, News::Single).await;
            }
            queued = to_device.next() => {
                let Some(ToDeviceQueued { user_id, .. }) = queued else {
                    anyhow::bail!("the bus closed the to-device subscription");
                };
                sync.positions.changed();
                sync.waiters.wake(&user_id, News::Burst);
            }
            change = device_lists.next() => {
                let Some(DeviceListChanged { user_id, .. }) = change else {
                    anyhow::bail!("the bus closed the device-list subscription");
                };
                sync.positions.changed();
                sync.wake_sharing_a_room_with(&user_id, News::Burst).await;
            }
            change = typing.next() => {
                let Some(TypingChanged { room_id, user_id, until_ms }) = change else {
                    anyhow::bail!("the bus closed the typing subscription");
                };
                if sync.typing.apply(&room_id, &user_id, until_ms) {
                    sync.wake_room(&room_id, News::Single).await;
                }
            }
        }
    }
}

impl Synchrotron {
    async fn on_persisted(&self, event: &PersistedEvent) {
        self.positions.changed();
        if event.state_rebuilt {
            self.members.forget(&event.room_id);
        }
        if let (Some(target), Some(membership)) = (&event.state_key, &event.membership) {
            self.members.apply(&event.room_id, target, membership);
            self.waiters.wake(target, News::Single);
        }
        self.wake_room(&event.room_id, News::Single).await;
    }

    /// Wakes the room's joined and invited members.
    async fn wake_room(&self, room_id: &str, news: News) {
        match self.members.of(self.store.as_ref(), room_id).await {
            Ok(members) => members
                .iter()
                .for_each(|user| self.waiters.wake(user, news)),
            Err(error) => {
                tracing::warn!(%error, "cannot read room members; waking everyone");
                self.members.clear();
                self.waiters.wake_everyone();
            }
        }
    }

    /// Wakes the user and everyone joined to a room with them.
    async fn wake_sharing_a_room_with(&self, user_id: &str, news: News) {
        self.waiters.wake(user_id, news);
        match self.store.memberships_of_user(user_id).await {
            Ok(memberships) => {
                for membership in memberships.iter().filter(|m| m.membership == "join") {
                    self.wake_room(&membership.room_id, news).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read a user's rooms; waking everyone");
                self.waiters.wake_everyone();
            }
        }
    }

    /// Reads the notices running now, for a synchrotron that starts while
    /// others already serve them.
    async fn learn_typing(&self) {
        match self.store.typing_now(now_millis()).await {
            Ok(notices) => {
                for notice in notices {
                    self.typing
                        .apply(&notice.room_id, &notice.user_id, Some(notice.until_ms));
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the running typing notices"),
        }
    }
}

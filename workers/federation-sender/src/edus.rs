//! EDUs of this server's users: typing notices and presence, rung on the
//! bus, are queued for the other servers in the room, or in any room the
//! user is in (each replica for the destinations it holds). Read receipts
//! and device-list changes are read from the store's streams from each
//! partition's cursors, so none is lost while no sender runs (a bell only
//! wakes the pass). To-device messages are queued by the client API
//! directly.

use std::collections::{BTreeSet, HashMap};

use myelin_bus::topics::{DeviceListChanged, PresenceChanged, TypingChanged};
use myelin_store::{EduStream, QueuedEdu, Receipt};
use myelin_types::{Partition, StreamPosition};
use serde_json::{Value, json};

use crate::FederationSender;

/// Users whose deleted devices are remembered; all are forgotten when full.
const MAX_DELETED_REMEMBERED: usize = 10_000;
/// Positions of a stream read past the cursors in one pass: as many
/// device-list users or receipts at most.
const MAX_STREAM_WINDOW: usize = 10_000;
/// A window of a stream that could not all be queued is tried again after
/// this long.
const STREAM_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether an EDU still means something after an outage. A typing notice
/// or a presence update is old news by then, so a destination being
/// retried does not get them queued; receipts and device-list updates
/// wait for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum EduKind {
    Passing,
    Lasting,
}

impl EduKind {
    /// Whether to queue it for a destination that waits to be retried
    /// until `waiting_until` (ms), if at all, at `now`.
    fn worth_queueing(self, waiting_until: Option<i64>, now: i64) -> bool {
        self == EduKind::Lasting || waiting_until.is_none_or(|until| until <= now)
    }
}

impl FederationSender {
    pub(crate) fn is_local(&self, user_id: &str) -> bool {
        user_id
            .split_once(':')
            .is_some_and(|(_, server)| server == self.config.server_name)
    }

    /// Queues `edu` for every other server in the room this replica holds;
    /// `false` when it could not be queued.
    async fn queue_for_room(&self, room_id: &str, edu: Value, kind: EduKind) -> bool {
        match self.servers_in_room(room_id).await {
            Ok(servers) => self.queue_for_servers(servers, edu, kind).await,
            Err(error) => {
                tracing::warn!(%error, %room_id, "cannot find the servers of a room");
                false
            }
        }
    }

    /// Queues `edu` for those of `servers` whose partition this replica
    /// holds; a passing one skips the servers it is waiting to retry.
    /// `false` when the store could not take it.
    async fn queue_for_servers(
        &self,
        servers: BTreeSet<String>,
        edu: Value,
        kind: EduKind,
    ) -> bool {
        let now = myelin_types::now_millis();
        let servers: Vec<String> = servers
            .into_iter()
            .filter(|server| kind.worth_queueing(self.waiting_until(server), now))
            .collect();
        let held = self.held().keys().copied().collect::<Vec<u16>>();
        let edu_json = edu.to_string();
        let edus: Vec<QueuedEdu> = servers
            .into_iter()
            .filter(|server| *server != self.config.server_name)
            .filter_map(|destination| {
                let partition = Partition::of_server(&destination).0;
                held.contains(&partition).then(|| QueuedEdu {
                    destination,
                    partition,
                    edu_json: edu_json.clone(),
                })
            })
            .collect();
        if edus.is_empty() {
            return true;
        }
        match self.store.enqueue_edus(edus).await {
            Ok(()) => {
                self.wake.notify_one();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot queue an EDU");
                false
            }
        }
    }

    pub(crate) async fn queue_typing(&self, change: TypingChanged) {
        if !self.is_local(&change.user_id) {
            return;
        }
        let edu = json!({
            "edu_type": "m.typing",
            "content": {
                "room_id": change.room_id,
                "user_id": change.user_id,
                "typing": change.until_ms.is_some(),
            },
        });
        self.queue_for_room(&change.room_id, edu, EduKind::Passing)
            .await;
    }

    /// Tells other servers of local users' public read receipts since the
    /// held partitions' cursors (the store's receipts stream), so one made
    /// while no sender ran goes out too; then moves the cursors.
    pub(crate) async fn queue_receipt_changes(&self) -> myelin_store::StoreResult<()> {
        let newest = self.store.max_receipt_position().await?;
        self.queue_from_cursors(EduStream::Receipts, newest, |from, upto| async move {
            let receipts = self
                .store
                .receipts_between(from, upto, MAX_STREAM_WINDOW)
                .await?;
            let mut all_queued = true;
            for receipt in receipts {
                if receipt.receipt_type != "m.read" || !self.is_local(&receipt.user_id) {
                    continue;
                }
                all_queued &= self.queue_receipt(receipt).await;
            }
            Ok(all_queued)
        })
        .await
    }

    /// One receipt for every other server in its room (`m.receipt`);
    /// `false` when it could not be queued.
    async fn queue_receipt(&self, receipt: Receipt) -> bool {
        let mut data = json!({"ts": receipt.ts});
        if let Some(thread_id) = &receipt.thread_id {
            data["thread_id"] = Value::String(thread_id.clone());
        }
        let edu = json!({
            "edu_type": "m.receipt",
            "content": {
                receipt.room_id.clone(): {
                    "m.read": {
                        receipt.user_id.clone(): {
                            "event_ids": [receipt.event_id],
                            "data": data,
                        }
                    }
                }
            },
        });
        self.queue_for_room(&receipt.room_id, edu, EduKind::Lasting)
            .await
    }

    /// A device-list bell: devices it says were deleted are remembered (an
    /// update must name one when none is left), and a pass tells other
    /// servers of what the store's device-list stream holds.
    pub(crate) fn note_device_list_change(&self, change: DeviceListChanged) {
        if !change.deleted_devices.is_empty() && self.is_local(&change.user_id) {
            let mut deleted = self.deleted_lock();
            if deleted.len() >= MAX_DELETED_REMEMBERED {
                deleted.clear();
            }
            deleted.insert(change.user_id, change.deleted_devices);
        }
        self.wake.notify_one();
    }

    fn deleted_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.deleted_devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells other servers of local users' device-list changes since the
    /// held partitions' cursors (the store's device-list stream), so one
    /// made while no sender ran goes out too; then moves the cursors.
    pub(crate) async fn queue_device_list_changes(&self) -> myelin_store::StoreResult<()> {
        let newest = self.store.max_device_list_position().await?;
        self.queue_from_cursors(EduStream::DeviceLists, newest, |from, upto| async move {
            let users = self
                .store
                .device_list_changes(from, upto, MAX_STREAM_WINDOW)
                .await?;
            let mut all_queued = true;
            for user_id in users {
                all_queued &= self.queue_device_list_update(user_id).await;
            }
            Ok(all_queued)
        })
        .await
    }

    /// Queues what a stream of local users' changes holds past the held
    /// partitions' cursors, from the lowest of them, one window of
    /// positions at a time: `queue` reads `(from, upto]` and tells whether
    /// all of it was queued. Each change takes a position of its own, so a
    /// window of as many positions as are read holds all of its changes,
    /// and the cursors move to its end exactly. A partition further on than
    /// the lowest may hear of a change twice, which every EDU read this way
    /// bears (a receipt, or an update that asks for the whole list).
    async fn queue_from_cursors<F, Fut>(
        &self,
        stream: EduStream,
        newest: StreamPosition,
        queue: F,
    ) -> myelin_store::StoreResult<()>
    where
        F: FnOnce(StreamPosition, StreamPosition) -> Fut,
        Fut: std::future::Future<Output = myelin_store::StoreResult<bool>>,
    {
        let cursors: Vec<_> = self
            .held()
            .iter()
            .map(|(partition, state)| (*partition, state.fence, state.edu_cursor(stream)))
            .filter(|(_, _, cursor)| *cursor < newest)
            .collect();
        let Some(from) = cursors.iter().map(|(_, _, cursor)| *cursor).min() else {
            return Ok(());
        };
        if self.stream_held_off(stream) {
            return Ok(());
        }
        let window = i64::try_from(MAX_STREAM_WINDOW).unwrap_or(i64::MAX);
        let upto = StreamPosition(newest.0.min(from.0.saturating_add(window)));
        let queued = queue(from, upto).await;
        if !matches!(queued, Ok(true)) {
            // The cursors stay, and the window waits a while: what was
            // queued of it wakes the next pass, which would queue it all
            // again at once.
            self.hold_off_stream(stream);
            return queued.map(|_| ());
        }
        for (partition, fence, _) in cursors.into_iter().filter(|(_, _, cursor)| *cursor < upto) {
            match self
                .store
                .advance_edu_cursor(partition, fence, stream, upto)
                .await
            {
                Ok(()) => {
                    if let Some(state) = self.held().get_mut(&partition) {
                        *state.edu_cursor_mut(stream) = upto;
                    }
                }
                Err(myelin_store::StoreError::Fenced) => {
                    self.leases.review_now();
                    self.held().remove(&partition);
                }
                Err(error) => return Err(error),
            }
        }
        if upto < newest {
            // More than one window behind: another pass at once.
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Whether a stream's window failed lately and waits to be tried again.
    fn stream_held_off(&self, stream: EduStream) -> bool {
        self.streams_held_off()
            .get(&stream)
            .is_some_and(|until| std::time::Instant::now() < *until)
    }

    fn hold_off_stream(&self, stream: EduStream) {
        self.streams_held_off()
            .insert(stream, std::time::Instant::now() + STREAM_RETRY_AFTER);
    }

    fn streams_held_off(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<EduStream, std::time::Instant>> {
        self.streams_held_off
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A local user's devices or keys changed: every server sharing a room
    /// with them is told (`m.device_list_update`). The update cites no
    /// earlier one (`prev_id` is empty), which asks the receiver to fetch
    /// the whole list again (`/user/devices`), so it comes out right
    /// whatever changed: new keys, a deleted device, cross-signing keys.
    /// `false` when it could not be queued (to be tried again).
    async fn queue_device_list_update(&self, user_id: String) -> bool {
        if !self.is_local(&user_id) {
            return true;
        }
        let found = async {
            let servers = self.servers_sharing_a_room(&user_id).await?;
            let devices = self.store.devices(&user_id).await?;
            let stream_id = self.store.max_device_list_position().await?;
            Ok::<_, myelin_store::StoreError>((servers, devices, stream_id))
        };
        let (servers, devices, stream_id) = match found.await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, %user_id, "cannot prepare a device-list update");
                return false;
            }
        };
        // The update must name a device: one the user has, else the one
        // just deleted, as deleted.
        let mut content = json!({
            "user_id": user_id,
            "stream_id": stream_id.0.max(0),
            "prev_id": [],
        });
        let deleted = self
            .deleted_lock()
            .get(&user_id)
            .cloned()
            .unwrap_or_default();
        match (devices.into_iter().next(), deleted.first()) {
            (Some(device), _) => {
                content["device_id"] = Value::String(device.device_id);
                content["deleted"] = Value::Bool(false);
                if let Some(name) = device.display_name {
                    content["device_display_name"] = Value::String(name);
                }
            }
            (None, Some(deleted)) => {
                content["device_id"] = Value::String(deleted.clone());
                content["deleted"] = Value::Bool(true);
            }
            (None, None) => return true,
        }
        let edu = json!({"edu_type": "m.device_list_update", "content": content});
        self.queue_for_servers(servers, edu, EduKind::Lasting).await
    }

    /// A local user's presence changed: every server sharing a room with
    /// them gets it (`m.presence`).
    pub(crate) async fn queue_presence(&self, change: PresenceChanged) {
        if !self.is_local(&change.user_id) {
            return;
        }
        let user_id = change.user_id;
        let found = async {
            let record = self.store.presence(&user_id).await?;
            let servers = self.servers_sharing_a_room(&user_id).await?;
            Ok::<_, myelin_store::StoreError>((record, servers))
        };
        let (record, servers) = match found.await {
            Ok((Some(record), servers)) => (record, servers),
            Ok((None, _)) => return,
            Err(error) => {
                tracing::warn!(%error, %user_id, "cannot prepare a presence update");
                return;
            }
        };
        let mut entry = json!({
            "user_id": user_id,
            "presence": record.state,
            "last_active_ago": (myelin_types::now_millis() - record.last_active_ts).max(0),
            "currently_active": record.state == "online",
        });
        if let Some(status) = record.status_msg {
            entry["status_msg"] = Value::String(status);
        }
        let edu = json!({"edu_type": "m.presence", "content": {"push": [entry]}});
        self.queue_for_servers(servers, edu, EduKind::Passing).await;
    }

    /// The other servers with a user in a room `user_id` is joined to.
    async fn servers_sharing_a_room(
        &self,
        user_id: &str,
    ) -> myelin_store::StoreResult<BTreeSet<String>> {
        let mut servers = BTreeSet::new();
        for membership in self.store.memberships_of_user(user_id).await? {
            if membership.membership == "join" {
                servers.extend(self.servers_in_room(&membership.room_id).await?);
            }
        }
        servers.remove(&self.config.server_name);
        Ok(servers)
    }
}

#[cfg(test)]
mod tests {
    use super::EduKind;

    #[test]
    fn passing_edus_skip_destinations_being_retried() {
        let now = 1_000;
        for waiting in [None, Some(0), Some(now)] {
            assert!(EduKind::Passing.worth_queueing(waiting, now), "{waiting:?}");
        }
        assert!(!EduKind::Passing.worth_queueing(Some(now + 1), now));
        assert!(EduKind::Lasting.worth_queueing(Some(now + 60_000), now));
    }
}

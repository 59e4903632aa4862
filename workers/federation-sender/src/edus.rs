//! EDUs of this server's users: typing notices and presence, rung on the
//! bus, are queued for the other servers in the room, or in any room the
//! user is in (each replica for the destinations it holds). Read receipts
//! and device-list changes are read from the store's streams from each
//! partition's cursors, so none is lost while no sender runs (a bell only
//! wakes the pass). To-device messages are queued by the client API
//! directly.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use myelin_bus::topics::{PresenceChanged, TypingChanged};
use myelin_federation::user_keys::{Asker, user_keys};
use myelin_store::{DeviceListEntry, DeviceListSubject, EduStream, QueuedEdu, Receipt};
use myelin_types::{Partition, StreamPosition};
use ruma::{OwnedDeviceId, OwnedUserId};
use serde_json::{Value, json};

use crate::FederationSender;

/// Positions of a stream read past the cursors in one pass: as many
/// device-list changes or receipts at most.
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

    /// Tells other servers of local users' device-list changes since the
    /// held partitions' cursors (the store's device-list stream), so one
    /// made while no sender ran goes out too; then moves the cursors.
    pub(crate) async fn queue_device_list_changes(&self) -> myelin_store::StoreResult<()> {
        let newest = self.store.max_device_list_position().await?;
        self.queue_from_cursors(EduStream::DeviceLists, newest, |from, upto| async move {
            let entries = self
                .store
                .device_list_entries(from, upto, MAX_STREAM_WINDOW)
                .await?;
            let mut sharing: HashMap<String, BTreeSet<String>> = HashMap::new();
            let mut all_queued = true;
            for entry in entries {
                if !self.is_local(&entry.user_id) {
                    continue;
                }
                let Some(edu) = self.device_list_edu(&entry).await? else {
                    continue;
                };
                let servers = match sharing.get(&entry.user_id) {
                    Some(servers) => servers.clone(),
                    None => {
                        let servers = self.servers_sharing_a_room(&entry.user_id).await?;
                        sharing.insert(entry.user_id.clone(), servers.clone());
                        servers
                    }
                };
                all_queued &= self.queue_for_servers(servers, edu, EduKind::Lasting).await;
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

    /// What other servers are told of one change of a local user's device
    /// list; `None` when there is nothing to tell.
    ///
    /// A device's change is an `m.device_list_update` at the change's
    /// position, citing the user's change before it (`prev_id`), so a
    /// server that saw that one applies this one to the list it keeps, and
    /// any other fetches the whole list. New cross-signing keys are an
    /// `m.signing_key_update`, outside that chain. A change of the whole
    /// list names one device and cites nothing, which asks for the whole
    /// list.
    async fn device_list_edu(
        &self,
        entry: &DeviceListEntry,
    ) -> myelin_store::StoreResult<Option<Value>> {
        let user_id = entry.user_id.as_str();
        let Ok(owner) = OwnedUserId::try_from(user_id) else {
            return Ok(None);
        };
        let device_id = match &entry.subject {
            DeviceListSubject::SigningKeys => {
                let asked = BTreeMap::from([(owner.clone(), Vec::new())]);
                let mut keys =
                    user_keys(self.store.as_ref(), &asked, Asker::server(&self.config)).await?;
                let mut content = json!({"user_id": user_id});
                if let Some(key) = keys.master_keys.remove(&owner) {
                    content["master_key"] = raw_value(key.json());
                }
                if let Some(key) = keys.self_signing_keys.remove(&owner) {
                    content["self_signing_key"] = raw_value(key.json());
                }
                return Ok(Some(
                    json!({"edu_type": "m.signing_key_update", "content": content}),
                ));
            }
            DeviceListSubject::Device(device_id) => device_id.clone(),
            DeviceListSubject::Everything => {
                let Some(device) = self.store.devices(user_id).await?.into_iter().next() else {
                    return Ok(None);
                };
                let content = json!({
                    "user_id": user_id,
                    "device_id": device.device_id,
                    "stream_id": entry.position.0,
                    "prev_id": [],
                });
                return Ok(Some(
                    json!({"edu_type": "m.device_list_update", "content": content}),
                ));
            }
        };
        let prev_id: Vec<i64> = self
            .store
            .device_list_chain_position(user_id, Some(entry.position))
            .await?
            .map(|position| position.0)
            .into_iter()
            .collect();
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": entry.position.0,
            "prev_id": prev_id,
        });
        let asked =
            BTreeMap::from([(owner.clone(), vec![OwnedDeviceId::from(device_id.as_str())])]);
        let keys = user_keys(self.store.as_ref(), &asked, Asker::server(&self.config))
            .await?
            .device_keys
            .remove(&owner)
            .and_then(|mut keys| keys.remove(device_id.as_str()));
        let device = self
            .store
            .devices(user_id)
            .await?
            .into_iter()
            .find(|device| device.device_id == device_id);
        if keys.is_none() && device.is_none() {
            content["deleted"] = Value::Bool(true);
        }
        if let Some(keys) = keys {
            let mut keys = raw_value(keys.json());
            // The name travels beside the keys, not in them.
            if let Some(keys) = keys.as_object_mut() {
                keys.remove("unsigned");
            }
            content["keys"] = keys;
        }
        let name = device.and_then(|device| device.display_name);
        if let Some(name) = name.filter(|_| self.config.allow_device_name_lookup_over_federation) {
            content["device_display_name"] = Value::String(name);
        }
        Ok(Some(
            json!({"edu_type": "m.device_list_update", "content": content}),
        ))
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

/// A key's JSON as a value; `null` if it does not parse (it was checked
/// when uploaded).
fn raw_value(json: &serde_json::value::RawValue) -> Value {
    serde_json::from_str(json.get()).unwrap_or(Value::Null)
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

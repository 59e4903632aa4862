//! Queueing: each held partition reads the event log from its cursor and
//! queues this server's events for the destinations it holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use myelin_store::{QueuedPdu, StoreError, StoreResult, StoredEvent};
use myelin_types::Partition;

use crate::FederationSender;

/// The most snapshots whose servers are remembered; all are forgotten when
/// it fills.
const MAX_SNAPSHOTS_CACHED: usize = 1000;
/// Events read from the log in one pass.
const LOG_BATCH: usize = 500;
/// A partition with nothing to queue writes its cursor this often, so a new
/// holder does not read far back.
const CURSOR_CHECKPOINT: Duration = Duration::from_secs(30);

impl FederationSender {
    /// Queues what was persisted since the held partitions' cursors, adding
    /// the destinations given events to `queued_to`; `true` when more of the
    /// log is waiting.
    pub(crate) async fn queue_new_events(
        &self,
        queued_to: &mut BTreeSet<String>,
    ) -> StoreResult<bool> {
        let held = self.held().clone();
        let Some(from) = held.values().map(|partition| partition.cursor).min() else {
            return Ok(false);
        };
        let upto = self.store.max_position().await?;
        if from >= upto {
            return Ok(false);
        }
        let events = self.store.events_after(from, upto, LOG_BATCH).await?;
        let more = events.len() == LOG_BATCH;
        let reached = match (more, events.last()) {
            (true, Some(last)) => last.position,
            _ => upto,
        };
        let own_suffix = format!(":{}", self.config.server_name);
        let mut queued: BTreeMap<u16, Vec<QueuedPdu>> = BTreeMap::new();
        for event in events
            .iter()
            .filter(|event| event.sender.ends_with(&own_suffix))
        {
            let servers = self.servers_at_event(event).await?;
            for destination in destinations(event, &servers, &self.config.server_name) {
                let partition = Partition::of_server(&destination).0;
                let Some(state) = held.get(&partition) else {
                    continue;
                };
                if event.position > state.cursor {
                    queued.entry(partition).or_default().push(QueuedPdu {
                        destination,
                        event_id: event.event_id.clone(),
                    });
                }
            }
        }
        for (partition, state) in &held {
            if state.cursor >= reached {
                continue;
            }
            let pdus = queued.remove(partition).unwrap_or_default();
            let destinations: Vec<String> =
                pdus.iter().map(|pdu| pdu.destination.clone()).collect();
            let checkpoint_due = state.stored_at.elapsed() >= CURSOR_CHECKPOINT;
            let write = !pdus.is_empty() || checkpoint_due;
            if write {
                match self
                    .store
                    .enqueue_pdus(*partition, state.fence, reached, pdus)
                    .await
                {
                    Ok(()) => queued_to.extend(destinations),
                    Err(StoreError::Fenced) => {
                        // The partition moved on; its new holder queues it.
                        self.leases.review_now();
                        self.held().remove(partition);
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            if let Some(current) = self.held().get_mut(partition) {
                current.cursor = reached;
                if write {
                    current.stored = reached;
                    current.stored_at = Instant::now();
                }
            }
        }
        Ok(more)
    }

    /// The servers with a user joined to the room in the state after the
    /// event; the room's servers now for an event written before snapshots
    /// were kept.
    async fn servers_at_event(&self, event: &StoredEvent) -> StoreResult<Arc<BTreeSet<String>>> {
        let Some(snapshot_id) = self
            .store
            .event_state_ids(&event.event_id)
            .await?
            .and_then(|ids| ids.after)
        else {
            return Ok(Arc::new(self.servers_in_room(&event.room_id).await?));
        };
        if let Some(known) = self.servers_at_lock().get(&snapshot_id) {
            return Ok(Arc::clone(known));
        }
        let Some(snapshot) = self.store.snapshot(&snapshot_id).await? else {
            return Ok(Arc::new(self.servers_in_room(&event.room_id).await?));
        };
        let member_ids: Vec<String> = snapshot
            .entries
            .into_iter()
            .filter(|entry| entry.event_type == "m.room.member")
            .map(|entry| entry.event_id)
            .collect();
        let servers: BTreeSet<String> = self
            .store
            .events_by_id(&member_ids)
            .await?
            .iter()
            .filter(|member| {
                myelin_room::content_text(&member.pdu_json, "membership").as_deref() == Some("join")
            })
            .filter_map(|member| member.state_key.as_deref().and_then(server_of))
            .map(str::to_owned)
            .collect();
        let servers = Arc::new(servers);
        let mut cache = self.servers_at_lock();
        if cache.len() >= MAX_SNAPSHOTS_CACHED {
            cache.clear();
        }
        cache.insert(snapshot_id, Arc::clone(&servers));
        Ok(servers)
    }

    fn servers_at_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<BTreeSet<String>>>> {
        self.servers_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The servers with a user joined to the room now.
    pub(crate) async fn servers_in_room(&self, room_id: &str) -> StoreResult<BTreeSet<String>> {
        Ok(self
            .store
            .room_memberships(room_id)
            .await?
            .into_iter()
            .filter(|member| member.membership == "join")
            .filter_map(|member| server_of(&member.user_id).map(str::to_owned))
            .collect())
    }
}

fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

/// Where an event goes: every other server in the room, and the server of
/// a user it removes (a kick or ban must reach them).
fn destinations(event: &StoredEvent, servers: &BTreeSet<String>, own: &str) -> BTreeSet<String> {
    let mut servers = servers.clone();
    if event.event_type == "m.room.member"
        && let Some(target) = event.state_key.as_deref().and_then(server_of)
    {
        let membership = myelin_room::content_text(&event.pdu_json, "membership");
        if matches!(membership.as_deref(), Some("leave" | "ban")) {
            servers.insert(target.to_owned());
        }
    }
    servers.remove(own);
    servers
}

#[cfg(test)]
mod tests {
    use super::*;
    use myelin_types::StreamPosition;

    fn member(target: &str, membership: &str) -> StoredEvent {
        StoredEvent {
            position: StreamPosition(1),
            slot: StreamPosition(1),
            opens_gap: false,
            event_id: "$e".to_owned(),
            room_id: "!r:a.test".to_owned(),
            sender: "@admin:a.test".to_owned(),
            event_type: "m.room.member".to_owned(),
            state_key: Some(target.to_owned()),
            depth: 1,
            origin_server_ts: 0,
            pdu_json: format!(r#"{{"content":{{"membership":"{membership}"}}}}"#),
            txn: None,
            redacted_by: None,
            redaction_pdu_json: None,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn every_other_server_in_the_room_and_a_removed_users_server() {
        let servers = set(&["a.test", "b.test"]);
        assert_eq!(
            destinations(&member("@x:c.test", "join"), &servers, "a.test"),
            set(&["b.test"])
        );
        assert_eq!(
            destinations(&member("@x:c.test", "ban"), &servers, "a.test"),
            set(&["b.test", "c.test"])
        );
        assert_eq!(
            destinations(&member("@x:c.test", "leave"), &servers, "a.test"),
            set(&["b.test", "c.test"])
        );
    }
}

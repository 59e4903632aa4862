//! Events from other servers. The federation API has checked format,
//! signatures and content hash; here each event is authorized against its
//! cited auth events and the state before it, soft-failed when the room's
//! current state no longer allows it, and written with the state after it.
//! Where it branches off the room's head, the branches' states are resolved
//! (v2) into the new current state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use myelin_bus::messages::{
    JoinRemoteRoom, RemoteEvent, RemoteEventKind, RemoteMembership, RoomInputDone, RoomInputRefused,
};
use myelin_room::{EventPool, Pdu, RoomState, authorize_citing, event_ref, resolve_state};
use myelin_store::{
    CurrentStateChange, Fence, OutlierEvent, PersistEvent, PersistOutcome, StateEntry,
};
use ruma::{EventId, OwnedEventId};
use serde_json::Value;

use crate::EventPersister;
use crate::head::{CachedHead, load_head};
use crate::input::{refused, unavailable};
use crate::redactions::Arriving;
use crate::snapshots::{self, HeadSnapshot};

/// The most events read to resolve one merge (state and auth chains).
const MAX_POOL: usize = 20_000;

fn bad_event(why: impl std::fmt::Display) -> RoomInputRefused {
    refused(400, "M_BAD_JSON", &why.to_string())
}

fn damaged(why: impl std::fmt::Display) -> RoomInputRefused {
    refused(
        500,
        "M_UNKNOWN",
        &format!("stored room state is damaged: {why}"),
    )
}

/// What checking another server's event against the head comes to.
pub(crate) enum RemoteStep {
    /// Nothing to write: known already, or soft-failed (kept as an outlier).
    Nothing,
    /// The event's record; the head already stands after it.
    Write(Box<PersistEvent>),
}

/// The state after events composed on a branch of the room but not written
/// yet, by event ID, with their snapshots: the next event of a batch on the
/// same branch is judged on it without the store. Each is taken by the
/// first event citing it; another citing it reads the store, once the
/// pending events are written.
pub(crate) type Unwritten = HashMap<String, (RoomState, HeadSnapshot)>;

/// The state a remote event is judged against, and its snapshot when one
/// existing snapshot holds it.
struct StateBefore {
    state: RoomState,
    snapshot: Option<HeadSnapshot>,
    /// The event's `prev_events` are exactly the room's forward extremities.
    extends_head: bool,
    /// The state its sender's server gave stood in for prev_events not
    /// held here: history before the event is missing.
    opens_gap: bool,
}

impl EventPersister {
    /// Whether the event is stored already (a retry, or the same event
    /// from another server).
    async fn already_stored(&self, event_id: &str) -> Result<bool, RoomInputRefused> {
        Ok(self
            .event_store
            .event(event_id)
            .await
            .map_err(unavailable)?
            .is_some())
    }

    /// Writes an event and tells readers; `None` when it was there already.
    async fn persist_and_announce(
        &self,
        record: PersistEvent,
    ) -> Result<Option<myelin_types::StreamPosition>, RoomInputRefused> {
        match self
            .event_store
            .persist_event(record.clone())
            .await
            .map_err(unavailable)?
        {
            PersistOutcome::Persisted(position) => {
                self.announce(&record, position).await;
                Ok(Some(position))
            }
            PersistOutcome::DuplicateTxn { .. } => Ok(None),
        }
    }

    pub(crate) async fn accept_remote(
        &self,
        remote: RemoteEvent,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let mut guard = self.locked_head(&remote.room_id).await?;
        let Some(head) = guard.as_mut() else {
            return Err(crate::head::head_missing());
        };
        let result = self.write_remote(head, remote, fence).await;
        if matches!(&result, Err(refusal) if refusal.status >= 500) {
            // The store may or may not have the event; trust only the store next time.
            *guard = None;
        }
        result
    }

    async fn write_remote(
        &self,
        head: &mut CachedHead,
        remote: RemoteEvent,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let done = |position| RoomInputDone {
            room_id: remote.room_id.clone(),
            event_id: remote.event_id.clone(),
            position,
        };
        // A retry, or the same event from another server: nothing to do.
        if self.already_stored(&remote.event_id).await? {
            return Ok(done(None));
        }
        match self
            .compose_remote(head, &remote, fence, &mut Unwritten::new())
            .await?
        {
            RemoteStep::Nothing => Ok(done(None)),
            RemoteStep::Write(record) => Ok(done(self.persist_and_announce(*record).await?)),
        }
    }

    /// Checks another server's event, which the store does not hold,
    /// against `head` and, when it is to be written, moves `head` past it
    /// and returns its record: the caller writes it, or drops `head` if it
    /// cannot.
    pub(crate) async fn compose_remote(
        &self,
        head: &mut CachedHead,
        remote: &RemoteEvent,
        fence: Fence,
        unwritten: &mut Unwritten,
    ) -> Result<RemoteStep, RoomInputRefused> {
        let pdu = Pdu::from_json(&remote.event_id, &remote.pdu_json).map_err(bad_event)?;
        check_kind(&pdu, remote)?;
        let version = head.version.clone();

        let before = self
            .state_before(head, &pdu, remote.state_ids.as_deref(), unwritten)
            .await?;
        let cited = self.authorize_remote(head, &pdu, &before.state).await?;
        if !before.extends_head
            && let Err(why) = authorize_against(&version, &pdu, &cited, &head.state)
        {
            if remote.kind != RemoteEventKind::Transaction {
                // A handshake is answered at once: the joiner asks again.
                return Err(refused(
                    403,
                    "M_FORBIDDEN",
                    &format!("the room no longer allows this: {why}"),
                ));
            }
            // Soft-failed: valid where it was sent, but the room has moved
            // on; it is kept hidden (an outlier), neither shown nor built
            // upon, and known when it comes again or is cited.
            tracing::info!(event_id = %remote.event_id, %why, "soft-failed an event from another server");
            self.store
                .store_outliers(vec![OutlierEvent {
                    event_id: remote.event_id.clone(),
                    room_id: remote.room_id.clone(),
                    sender: pdu.sender.to_string(),
                    event_type: pdu.event_type.to_string(),
                    state_key: pdu.state_key.clone(),
                    depth: pdu.depth,
                    origin_server_ts: pdu.origin_server_ts.get().into(),
                    pdu_json: remote.pdu_json.clone(),
                    soft_failed: true,
                }])
                .await
                .map_err(unavailable)?;
            return Ok(RemoteStep::Nothing);
        }

        let state_key = pdu.state_key.clone();
        let mut state_after = before.state.clone();
        if let Some(key) = &state_key {
            state_after.insert(
                (pdu.event_type.to_string(), key.clone()),
                Arc::new(pdu.clone()),
            );
        }
        let current = if before.extends_head {
            state_after.clone()
        } else {
            self.resolve(&version, &[head.state.clone(), state_after.clone()])
                .await?
        };
        let event_type = pdu.event_type.to_string();
        let (event_snapshots, snapshot_after) = snapshots::around_event(
            before.snapshot.as_ref(),
            &before.state,
            &remote.event_id,
            state_key.as_deref().map(|key| (event_type.as_str(), key)),
        );
        let resolved_state = (!before.extends_head).then(|| changes(&head.state, &current));
        if !before.extends_head {
            unwritten.insert(
                remote.event_id.clone(),
                (state_after.clone(), snapshot_after.clone()),
            );
        }
        // A redaction that came first: the event is written redacted, and
        // notifies no one.
        let redacted_on_arrival = self
            .waiting_redactions(
                head,
                &[Arriving {
                    event_id: &remote.event_id,
                    sender: pdu.sender.as_str(),
                    pdu_json: &remote.pdu_json,
                }],
            )
            .await?
            .remove(&remote.event_id)
            .and_then(|redactions| redactions.into_iter().next());
        let push_actions = if redacted_on_arrival.is_some() {
            Vec::new()
        } else {
            self.push_actions(head, pdu.sender.as_str(), &remote.pdu_json)
                .await
                .map_err(unavailable)?
        };
        let redaction = match &pdu.redacts {
            Some(target) if event_type == "m.room.redaction" => {
                self.remote_redaction(head, &remote.event_id, pdu.sender.as_str(), target.as_str())
                    .await?
            }
            _ => None,
        };
        let record = PersistEvent {
            event_id: remote.event_id.clone(),
            room_id: remote.room_id.clone(),
            sender: pdu.sender.to_string(),
            event_type,
            state_key: state_key.clone(),
            depth: pdu.depth,
            origin_server_ts: pdu.origin_server_ts.get().into(),
            pdu_json: remote.pdu_json.clone(),
            prev_events: pdu.prev_events.iter().map(ToString::to_string).collect(),
            membership: membership_of(&pdu),
            txn: None,
            redaction,
            redacted_on_arrival,
            new_room_version: None,
            push_actions,
            fence: Some(fence),
            snapshots: Some(event_snapshots),
            resolved_state,
            opens_gap: before.opens_gap,
        };
        let prevs: BTreeSet<&str> = pdu.prev_events.iter().map(|id| id.as_str()).collect();
        head.extremities
            .retain(|extremity| !prevs.contains(extremity.event_id.as_str()));
        head.extremities
            .push(event_ref(&version, &remote.event_id, &remote.pdu_json));
        head.max_depth = head.max_depth.max(pdu.depth);
        head.snapshot = before.extends_head.then_some(snapshot_after);
        head.state = current;
        Ok(RemoteStep::Write(Box::new(record)))
    }

    /// The state before `pdu`: the head's when it extends the head, else
    /// the state after each of its `prev_events` (composed in this batch,
    /// or stored), resolved when several.
    async fn state_before(
        &self,
        head: &CachedHead,
        pdu: &Pdu,
        given: Option<&[String]>,
        unwritten: &mut Unwritten,
    ) -> Result<StateBefore, RoomInputRefused> {
        if pdu.prev_events.is_empty() {
            return Err(bad_event("only a room's create event has no prev_events"));
        }
        let prevs: BTreeSet<&str> = pdu.prev_events.iter().map(|id| id.as_str()).collect();
        if head.is_extended_by(prevs.iter().copied()) {
            return Ok(StateBefore {
                state: head.state.clone(),
                snapshot: head.snapshot.clone(),
                extends_head: true,
                opens_gap: false,
            });
        }
        // Every prev must be an event of this room: another room's state
        // must never stand in for this one's.
        let prev_ids: Vec<String> = prevs
            .iter()
            .filter(|prev| !unwritten.contains_key(**prev))
            .map(|prev| (*prev).to_owned())
            .collect();
        let known = self
            .store
            .events_by_id(&prev_ids)
            .await
            .map_err(unavailable)?;
        if known.iter().any(|event| event.room_id != head.room_id) {
            return Err(bad_event("a prev_event belongs to another room"));
        }
        let mut forks = Vec::with_capacity(prevs.len());
        for prev in &prevs {
            let known = match unwritten.remove(*prev) {
                Some(known) => Some(known),
                None => self.state_after(&head.version, prev).await?,
            };
            match known {
                Some(known) => forks.push(known),
                // A gap that could not be filled: the state the sender's
                // server gave for the event stands in for its prevs'.
                None => {
                    if let Some(given) = given
                        && let Some((state, _)) =
                            self.stated(&head.room_id, &head.version, given).await?
                    {
                        return Ok(StateBefore {
                            state,
                            snapshot: None,
                            extends_head: false,
                            opens_gap: true,
                        });
                    }
                    return Err(refused(
                        400,
                        "M_MISSING_PREV_EVENTS",
                        &format!("the state at {prev} is not known to this server"),
                    ));
                }
            }
        }
        let (state, snapshot) = self.merge_forks(&head.version, forks).await?;
        Ok(StateBefore {
            state,
            snapshot,
            extends_head: false,
            opens_gap: false,
        })
    }

    /// The state after a stored event and its snapshot; `None` when the
    /// event or the state at it is not known here.
    pub(crate) async fn state_after(
        &self,
        version: &myelin_room::RoomVersion,
        event_id: &str,
    ) -> Result<Option<(RoomState, HeadSnapshot)>, RoomInputRefused> {
        let Some(snapshot_id) = self
            .store
            .event_state_ids(event_id)
            .await
            .map_err(unavailable)?
            .and_then(|ids| ids.after)
        else {
            return Ok(None);
        };
        let snapshot = self
            .store
            .snapshot(&snapshot_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| damaged(format!("snapshot {snapshot_id} is missing")))?;
        let state = self.state_of(version, &snapshot.entries).await?;
        Ok(Some((
            state,
            HeadSnapshot {
                id: snapshot_id,
                chain_length: snapshot.chain_length,
            },
        )))
    }

    /// The state where branches meet: a single branch's own, with its
    /// snapshot; several resolved (v2), with none.
    pub(crate) async fn merge_forks(
        &self,
        version: &myelin_room::RoomVersion,
        mut forks: Vec<(RoomState, HeadSnapshot)>,
    ) -> Result<(RoomState, Option<HeadSnapshot>), RoomInputRefused> {
        if forks.len() == 1 {
            let (state, snapshot) = forks.remove(0);
            return Ok((state, Some(snapshot)));
        }
        let states: Vec<RoomState> = forks.into_iter().map(|(state, _)| state).collect();
        Ok((self.resolve(version, &states).await?, None))
    }

    /// Authorizes another server's event in the spec's order: by the auth
    /// events it cites, then by the state before it. Returns the cited
    /// events, for checks against other states.
    pub(crate) async fn authorize_remote(
        &self,
        head: &CachedHead,
        pdu: &Pdu,
        state_before: &RoomState,
    ) -> Result<EventPool, RoomInputRefused> {
        let mut cited = self.cited_events(head, pdu).await?;
        // From version 12 the create event is cited by the room ID alone.
        if let Some(create) = head.state.get(&("m.room.create".to_owned(), String::new())) {
            cited.insert(create.event_id.clone(), Arc::clone(create));
        }
        let cited_state: RoomState = cited
            .values()
            .filter_map(|event| {
                let key = event.state_key.clone()?;
                Some(((event.event_type.to_string(), key), Arc::clone(event)))
            })
            .collect();
        authorize_against(&head.version, pdu, &cited, &cited_state).map_err(|why| {
            refused(
                403,
                "M_FORBIDDEN",
                &format!("rejected by its auth events: {why}"),
            )
        })?;
        authorize_against(&head.version, pdu, &cited, state_before).map_err(|why| {
            refused(
                403,
                "M_FORBIDDEN",
                &format!("rejected by the state before it: {why}"),
            )
        })?;
        Ok(cited)
    }

    /// Resolves branch states (v2), reading the auth chains it needs.
    pub(crate) async fn resolve(
        &self,
        version: &myelin_room::RoomVersion,
        forks: &[RoomState],
    ) -> Result<RoomState, RoomInputRefused> {
        // Branches that agree on every key resolve to that state (nothing
        // conflicts, and their auth chains are the same): a branch of
        // messages, as a server catching up sends, needs no reads.
        if let Some((first, rest)) = forks.split_first()
            && rest.iter().all(|fork| same_state(first, fork))
        {
            return Ok(first.clone());
        }
        let mut pool: EventPool = forks
            .iter()
            .flat_map(|fork| fork.values())
            .map(|event| (event.event_id.clone(), Arc::clone(event)))
            .collect();
        let mut wanted: Vec<OwnedEventId> = pool
            .values()
            .flat_map(|event| event.auth_events.clone())
            .collect();
        while !wanted.is_empty() && pool.len() < MAX_POOL {
            wanted.retain(|event_id| !pool.contains_key(event_id));
            wanted.sort();
            wanted.dedup();
            let found = self.events_of(version, &wanted).await?;
            if found.is_empty() {
                break;
            }
            wanted = found
                .values()
                .flat_map(|event| event.auth_events.clone())
                .collect();
            pool.extend(found);
        }
        resolve_state(version, forks, &pool).map_err(damaged)
    }

    /// The state a snapshot's entries name, read from the store.
    pub(crate) async fn state_of(
        &self,
        version: &myelin_room::RoomVersion,
        entries: &[StateEntry],
    ) -> Result<RoomState, RoomInputRefused> {
        let ids: Vec<String> = entries.iter().map(|entry| entry.event_id.clone()).collect();
        let stored = self.store.events_by_id(&ids).await.map_err(unavailable)?;
        if stored.len() != ids.len() {
            return Err(damaged("a snapshot names an event that is not stored"));
        }
        myelin_room::state_from_pdus(
            version,
            stored
                .iter()
                .map(|event| (event.event_id.as_str(), event.pdu_json.as_str())),
        )
        .map_err(damaged)
    }

    /// The stored events among `event_ids`, by ID.
    /// The auth events `pdu` cites: from the head's state where they are
    /// there (a message on the current state cites only such), the rest
    /// from the store.
    async fn cited_events(
        &self,
        head: &CachedHead,
        pdu: &Pdu,
    ) -> Result<EventPool, RoomInputRefused> {
        let mut keys = vec![
            ("m.room.create", ""),
            ("m.room.power_levels", ""),
            ("m.room.join_rules", ""),
            ("m.room.member", pdu.sender.as_str()),
        ];
        if let Some(state_key) = pdu.state_key.as_deref()
            && pdu.event_type.to_string() == "m.room.member"
        {
            keys.push(("m.room.member", state_key));
        }
        let mut cited = EventPool::new();
        for (event_type, state_key) in keys {
            if let Some(event) = head
                .state
                .get(&(event_type.to_owned(), state_key.to_owned()))
                .filter(|event| pdu.auth_events.contains(&event.event_id))
            {
                cited.insert(event.event_id.clone(), Arc::clone(event));
            }
        }
        let missing: Vec<OwnedEventId> = pdu
            .auth_events
            .iter()
            .filter(|event_id| !cited.contains_key(*event_id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            cited.extend(self.events_of(&head.version, &missing).await?);
        }
        Ok(cited)
    }

    pub(crate) async fn events_of(
        &self,
        version: &myelin_room::RoomVersion,
        event_ids: &[OwnedEventId],
    ) -> Result<EventPool, RoomInputRefused> {
        let ids: Vec<String> = event_ids.iter().map(ToString::to_string).collect();
        let stored = self.store.events_by_id(&ids).await.map_err(unavailable)?;
        stored
            .iter()
            .map(|event| {
                let mut pdu = Pdu::from_json(&event.event_id, &event.pdu_json).map_err(damaged)?;
                pdu.reference_hash =
                    event_ref(version, &event.event_id, &event.pdu_json).reference_hash;
                Ok((pdu.event_id.clone(), Arc::new(pdu)))
            })
            .collect()
    }
}

/// Whether two states name the same event for every key.
fn same_state(a: &RoomState, b: &RoomState) -> bool {
    a.len() == b.len()
        && a.iter().all(|(key, event)| {
            b.get(key)
                .is_some_and(|other| other.event_id == event.event_id)
        })
}

/// Authorizes `pdu` against `state`, its auth events found in the state or
/// among those it cites.
fn authorize_against(
    version: &myelin_room::RoomVersion,
    pdu: &Pdu,
    cited: &EventPool,
    state: &RoomState,
) -> Result<(), myelin_room::AuthError> {
    let by_id: BTreeMap<OwnedEventId, Arc<Pdu>> = state
        .values()
        .chain(cited.values())
        .map(|event| (event.event_id.clone(), Arc::clone(event)))
        .collect();
    authorize_citing(version, pdu, state, |event_id: &EventId| {
        by_id.get(event_id).cloned()
    })
}

/// A `send_join` or `send_leave` must carry that very membership, of a user
/// of the server that sent it.
fn check_kind(pdu: &Pdu, remote: &RemoteEvent) -> Result<(), RoomInputRefused> {
    let wanted = match remote.kind {
        RemoteEventKind::Transaction => return Ok(()),
        RemoteEventKind::Join => "join",
        RemoteEventKind::Leave => "leave",
        RemoteEventKind::Knock => "knock",
    };
    let own_membership = pdu.event_type.to_string() == "m.room.member"
        && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
        && membership_of(pdu).as_deref() == Some(wanted);
    if !own_membership {
        return Err(bad_event(format!(
            "the event is not the sender's own {wanted}"
        )));
    }
    if pdu.sender.server_name().as_str() != remote.origin {
        return Err(refused(
            403,
            "M_FORBIDDEN",
            "The event's sender is not a user of the server that sent it",
        ));
    }
    Ok(())
}

fn membership_of(pdu: &Pdu) -> Option<String> {
    if pdu.event_type.to_string() != "m.room.member" {
        return None;
    }
    let content: Value = serde_json::from_str(pdu.content.get()).ok()?;
    content.get("membership")?.as_str().map(str::to_owned)
}

/// The keys whose event differs between `old` and `new`.
pub(crate) fn changes(old: &RoomState, new: &RoomState) -> Vec<CurrentStateChange> {
    new.iter()
        .filter(|(key, event)| {
            old.get(*key)
                .is_none_or(|previous| previous.event_id != event.event_id)
        })
        .map(|((event_type, state_key), event)| CurrentStateChange {
            entry: StateEntry {
                event_type: event_type.clone(),
                state_key: state_key.clone(),
                event_id: event.event_id.to_string(),
            },
            membership: membership_of(event),
        })
        .collect()
}

impl EventPersister {
    /// Writes a local user's join to another server's room: authorized
    /// against the state the resident server gave (stored as outliers),
    /// which becomes the room's current state with the join.
    pub(crate) async fn join_remote_room(
        &self,
        join: JoinRemoteRoom,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let slot = self.heads.slot(&join.room_id);
        let mut guard = slot.lock().await;
        // Whatever is cached, the store is read afresh after this write.
        *guard = None;
        let done = |position| RoomInputDone {
            room_id: join.room_id.clone(),
            event_id: join.event_id.clone(),
            position,
        };
        if self.already_stored(&join.event_id).await? {
            return Ok(done(None));
        }
        let version = myelin_room::RoomVersion::stable(&join.room_version).ok_or_else(|| {
            refused(
                400,
                "M_UNSUPPORTED_ROOM_VERSION",
                "Unsupported room version",
            )
        })?;
        let pdu = Pdu::from_json(&join.event_id, &join.pdu_json).map_err(bad_event)?;
        let stored = self
            .store
            .events_by_id(&join.state_ids)
            .await
            .map_err(unavailable)?;
        if stored.len() != join.state_ids.len() {
            return Err(bad_event("the state before the join is not stored"));
        }
        let state_before = myelin_room::state_from_pdus(
            &version,
            stored
                .iter()
                .map(|event| (event.event_id.as_str(), event.pdu_json.as_str())),
        )
        .map_err(bad_event)?;
        let by_id: BTreeMap<OwnedEventId, Arc<Pdu>> = state_before
            .values()
            .map(|event| (event.event_id.clone(), Arc::clone(event)))
            .collect();
        authorize_citing(&version, &pdu, &state_before, |event_id| {
            by_id.get(event_id).cloned()
        })
        .map_err(|why| {
            refused(
                403,
                "M_FORBIDDEN",
                &format!("the join is not allowed: {why}"),
            )
        })?;

        let known_room = self
            .event_store
            .room(&join.room_id)
            .await
            .map_err(unavailable)?
            .is_some();
        let (current, stale_extremities) = if known_room {
            let head = load_head(self.store.as_ref(), &join.room_id).await?;
            let stale: Vec<String> = head
                .extremities
                .into_iter()
                .map(|extremity| extremity.event_id)
                .collect();
            (head.state, stale)
        } else {
            (RoomState::new(), Vec::new())
        };
        let mut state_after = state_before.clone();
        let state_key = pdu.state_key.clone().unwrap_or_default();
        state_after.insert(
            ("m.room.member".to_owned(), state_key.clone()),
            Arc::new(pdu.clone()),
        );
        let (event_snapshots, _) = snapshots::around_event(
            None,
            &state_before,
            &join.event_id,
            Some(("m.room.member", state_key.as_str())),
        );
        let record = PersistEvent {
            event_id: join.event_id.clone(),
            room_id: join.room_id.clone(),
            sender: pdu.sender.to_string(),
            event_type: "m.room.member".to_owned(),
            state_key: Some(state_key),
            depth: pdu.depth,
            origin_server_ts: pdu.origin_server_ts.get().into(),
            pdu_json: join.pdu_json.clone(),
            // What this server held of the room before (an invite) is no
            // extremity of the graph it now joins.
            prev_events: pdu
                .prev_events
                .iter()
                .map(ToString::to_string)
                .chain(stale_extremities)
                .collect(),
            membership: membership_of(&pdu),
            txn: None,
            redaction: None,
            redacted_on_arrival: None,
            new_room_version: (!known_room).then(|| version.id.as_str().to_owned()),
            push_actions: Vec::new(),
            fence: Some(fence),
            snapshots: Some(event_snapshots),
            resolved_state: Some(changes(&current, &state_after)),
            // The room's history before the join is held only as state.
            opens_gap: true,
        };
        let position = self.persist_and_announce(record).await?;
        Ok(done(position))
    }
}

impl EventPersister {
    /// A local user's membership from outside the room: another server's
    /// invite, the user's rejection of one, or the user's knock. In a room this server is in,
    /// it is judged like any event of that room; otherwise it is kept as the
    /// user's membership alone (until they join).
    pub(crate) async fn accept_remote_membership(
        &self,
        event: RemoteMembership,
        fence: Fence,
    ) -> Result<RoomInputDone, RoomInputRefused> {
        let own_suffix = format!(":{}", self.server_key.server_name);
        // The members are read under the room's lock, so a join written
        // meanwhile cannot be overwritten by a membership from outside.
        let slot = self.heads.slot(&event.room_id);
        let mut guard = slot.lock().await;
        let members = self
            .event_store
            .room_memberships(&event.room_id)
            .await
            .map_err(unavailable)?;
        let resident = members
            .iter()
            .any(|member| member.membership == "join" && member.user_id.ends_with(&own_suffix));
        if resident {
            drop(guard);
            let remote = RemoteEvent {
                room_id: event.room_id,
                event_id: event.event_id,
                pdu_json: event.pdu_json,
                origin: event.origin,
                kind: RemoteEventKind::Transaction,
                state_ids: None,
            };
            return self.accept_remote(remote, fence).await;
        }
        *guard = None;
        let done = |position| RoomInputDone {
            room_id: event.room_id.clone(),
            event_id: event.event_id.clone(),
            position,
        };
        if self.already_stored(&event.event_id).await? {
            return Ok(done(None));
        }
        let pdu = Pdu::from_json(&event.event_id, &event.pdu_json).map_err(bad_event)?;
        let state_key = pdu.state_key.clone().unwrap_or_default();
        let membership = membership_of(&pdu);
        let own_users_own = event.origin == self.server_key.server_name
            && pdu.sender.as_str() == state_key
            && pdu.sender.server_name().as_str() == self.server_key.server_name;
        let invites_a_local_user =
            state_key.ends_with(&own_suffix) && pdu.sender.server_name().as_str() == event.origin;
        match membership.as_deref() {
            Some("invite") if invites_a_local_user => {}
            // A local user's knock, taken by a resident server (`send_knock`).
            Some("knock") if own_users_own => {}
            // Only one's own rejection of an invite or a knock this server holds.
            Some("leave") if own_users_own => {
                let current = members
                    .iter()
                    .find(|member| member.user_id == state_key)
                    .map(|member| member.membership.as_str());
                if pdu.sender.as_str() != state_key || !matches!(current, Some("invite" | "knock"))
                {
                    return Err(refused(
                        403,
                        "M_FORBIDDEN",
                        "Only an invited user's own leave is taken without the room",
                    ));
                }
            }
            _ => {
                return Err(refused(
                    403,
                    "M_FORBIDDEN",
                    "Not a membership taken from outside the room",
                ));
            }
        }
        let known_room = self
            .event_store
            .room(&event.room_id)
            .await
            .map_err(unavailable)?
            .is_some();
        let record = PersistEvent {
            event_id: event.event_id.clone(),
            room_id: event.room_id.clone(),
            sender: pdu.sender.to_string(),
            event_type: "m.room.member".to_owned(),
            state_key: Some(state_key.clone()),
            depth: pdu.depth,
            origin_server_ts: pdu.origin_server_ts.get().into(),
            pdu_json: event.pdu_json.clone(),
            // The room's graph is not held here: nothing it cites is.
            prev_events: Vec::new(),
            membership: membership.clone(),
            txn: None,
            redaction: None,
            redacted_on_arrival: None,
            new_room_version: (!known_room).then(|| event.room_version.clone()),
            push_actions: Vec::new(),
            fence: Some(fence),
            snapshots: None,
            resolved_state: Some(vec![CurrentStateChange {
                entry: StateEntry {
                    event_type: "m.room.member".to_owned(),
                    state_key,
                    event_id: event.event_id.clone(),
                },
                membership,
            }]),
            opens_gap: false,
        };
        let position = self.persist_and_announce(record).await?;
        Ok(done(position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(events: &[(&str, &str, &str)]) -> RoomState {
        events
            .iter()
            .map(|(event_type, state_key, event_id)| {
                let json = serde_json::json!({
                    "room_id": "!r:a.test", "sender": "@u:a.test", "type": event_type,
                    "state_key": state_key, "content": {}, "origin_server_ts": 1, "depth": 1,
                    "prev_events": [], "auth_events": [],
                });
                let pdu = Pdu::from_json(event_id, &json.to_string()).expect("pdu");
                (
                    ((*event_type).to_owned(), (*state_key).to_owned()),
                    Arc::new(pdu),
                )
            })
            .collect()
    }

    #[test]
    fn states_are_the_same_only_when_every_key_names_the_same_event() {
        let head = state(&[
            ("m.room.create", "", "$c"),
            ("m.room.member", "@u:a.test", "$m"),
        ]);
        assert!(same_state(&head, &head.clone()));
        let other_member = state(&[
            ("m.room.create", "", "$c"),
            ("m.room.member", "@u:a.test", "$m2"),
        ]);
        assert!(!same_state(&head, &other_member));
        let fewer = state(&[("m.room.create", "", "$c")]);
        assert!(!same_state(&head, &fewer) && !same_state(&fewer, &head));
        let other_key = state(&[
            ("m.room.create", "", "$c"),
            ("m.room.member", "@v:a.test", "$m"),
        ]);
        assert!(!same_state(&head, &other_key));
    }
}

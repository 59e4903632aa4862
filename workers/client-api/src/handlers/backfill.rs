//! A room's history from other servers: when paging back through a room
//! reaches an event whose prev_events are not here, another server in the
//! room is asked for what came before (`/backfill`). That is the oldest
//! event this server holds, or an event just after a gap: one left when a
//! long gap was closed by its state, or while no one here was in the room.
//! The events are checked, kept as outliers, and handed to the room's
//! writer, which authorizes them against the state before each and puts
//! them in the timeline, below everything there or into the gap.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use myelin_bus::messages::{BackfilledEvent, BackfilledEvents, RoomInput};
use myelin_federation::CheckedPdu;
use myelin_federation::history::RemoteRoom;
use myelin_http::MatrixError;
use myelin_room::{Pdu, RoomVersion};
use myelin_store::{Direction, StoredEvent};
use myelin_types::{Partition, TimelinePoint};
use ruma::api::federation::backfill::get_backfill;
use ruma::{OwnedEventId, OwnedRoomId, OwnedServerName};

use crate::ClientApi;

/// The most prev_events of one page looked up to find a gap.
const MAX_CITED: usize = 200;
/// The most events asked of another server at once.
const MAX_BACKFILL: usize = 100;
/// The oldest events read to find where the room's known history ends.
const OLDEST_READ: usize = 20;
/// The most events of one batch whose state is asked for (`/state_ids`):
/// a chain needs it only for its oldest event.
const MAX_STATE_FETCHES: usize = 5;
/// The most servers asked, one after the other.
const MAX_SERVERS: usize = 3;
/// The same point is asked about again only after this long, so clients
/// paging at the start of a room do not make this server ask every time.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The most points remembered; all are forgotten when it fills.
const MAX_REMEMBERED: usize = 10_000;

/// When each room's history was last asked for, at which point.
#[derive(Default)]
pub(crate) struct BackfillAttempts(Mutex<HashMap<(String, String), Instant>>);

impl BackfillAttempts {
    /// Whether the point may be asked about now; records that it is.
    fn try_now(&self, room_id: &str, point: &str) -> bool {
        let mut attempts = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (room_id.to_owned(), point.to_owned());
        let now = Instant::now();
        if attempts
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < RETRY_AFTER)
        {
            return false;
        }
        if attempts.len() >= MAX_REMEMBERED {
            attempts.clear();
        }
        attempts.insert(key, now);
        true
    }
}

fn prev_events(event: &StoredEvent) -> Vec<String> {
    Pdu::from_json(&event.event_id, &event.pdu_json)
        .map(|pdu| pdu.prev_events.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

/// Where a room's history is missing, and what to ask for.
struct Missing {
    /// The prev_events that are not here.
    points: Vec<OwnedEventId>,
    /// Only what came before this depth is taken.
    ceiling: i64,
    /// Servers to ask first: the senders of the events next to the hole.
    servers_first: Vec<OwnedServerName>,
    /// The event just after a gap, `None` before the room's oldest event.
    gap_before: Option<String>,
}

impl ClientApi {
    /// Fetches up to `wanted` events of the room's history where a page
    /// read backwards (`page`, newest first) misses some: in a gap inside
    /// or just below the page, else, when the page `reached_start`, from
    /// before the oldest event held here. `true` when some were added to
    /// the timeline. Failing servers only mean nothing was added.
    pub(crate) async fn backfill(
        &self,
        room_id: &str,
        page: &[StoredEvent],
        reached_start: bool,
        wanted: usize,
    ) -> Result<bool, MatrixError> {
        let missing = match self.gap_in(room_id, page).await? {
            Some(gap) => gap,
            None if reached_start => match self.before_start(room_id).await? {
                Some(start) => start,
                None => return Ok(false),
            },
            None => return Ok(false),
        };
        self.fetch_missing(room_id, missing, wanted).await
    }

    /// The newest event of the page whose prev_events are not all in the
    /// timeline while older events are: the history between is missing (a
    /// gap left when a long one was closed by its state, or while no one
    /// here was in the room). The room's oldest event is no such event:
    /// what came before it is [`Self::before_start`].
    async fn gap_in(
        &self,
        room_id: &str,
        page: &[StoredEvent],
    ) -> Result<Option<Missing>, MatrixError> {
        let own: HashSet<&str> = page.iter().map(|event| event.event_id.as_str()).collect();
        // An event this server built cites only its timeline's extremities,
        // unless another server built it for us (a join, which is marked):
        // only the others can follow a gap, and a room of this server's
        // alone costs nothing here.
        let local_sender = format!(":{}", self.server_name);
        let cited: Vec<Vec<String>> = page
            .iter()
            .map(|event| {
                if !event.opens_gap && event.sender.ends_with(&local_sender) {
                    return Vec::new();
                }
                prev_events(event)
                    .into_iter()
                    .filter(|prev| !own.contains(prev.as_str()))
                    .collect()
            })
            .collect();
        let asked: BTreeSet<String> = cited.iter().flatten().take(MAX_CITED).cloned().collect();
        if asked.is_empty() {
            return Ok(None);
        }
        let asked_list: Vec<String> = asked.iter().cloned().collect();
        let in_timeline: HashSet<String> = self
            .store
            .timeline_ids(&asked_list)
            .await?
            .into_iter()
            .collect();
        for (index, (event, prevs)) in page.iter().zip(&cited).enumerate() {
            let points: Vec<OwnedEventId> = prevs
                .iter()
                .filter(|prev| asked.contains(*prev) && !in_timeline.contains(*prev))
                .filter_map(|prev| OwnedEventId::try_from(prev.as_str()).ok())
                .collect();
            if points.is_empty() {
                continue;
            }
            let older_held = index + 1 < page.len()
                || !self
                    .store
                    .room_events(
                        room_id,
                        event.point().before(),
                        None,
                        Direction::Backward,
                        1,
                    )
                    .await?
                    .is_empty();
            if !older_held {
                return Ok(None);
            }
            return Ok(Some(Missing {
                points,
                ceiling: event.depth,
                servers_first: sender_server(event).into_iter().collect(),
                gap_before: Some(event.event_id.clone()),
            }));
        }
        Ok(None)
    }

    /// What came before the oldest events held here: what they cite that
    /// is not in the timeline.
    async fn before_start(&self, room_id: &str) -> Result<Option<Missing>, MatrixError> {
        let oldest = self
            .store
            .room_events(
                room_id,
                TimelinePoint::BEFORE_ALL,
                None,
                Direction::Forward,
                OLDEST_READ,
            )
            .await?;
        let Some(ceiling) = oldest.iter().map(|event| event.depth).max() else {
            return Ok(None);
        };
        let own: HashSet<&str> = oldest.iter().map(|event| event.event_id.as_str()).collect();
        let cited: BTreeSet<String> = oldest
            .iter()
            .flat_map(prev_events)
            .filter(|prev| !own.contains(prev.as_str()))
            .collect();
        let cited: Vec<String> = cited.into_iter().take(OLDEST_READ).collect();
        let in_timeline: HashSet<String> =
            self.store.timeline_ids(&cited).await?.into_iter().collect();
        let points: Vec<OwnedEventId> = cited
            .iter()
            .filter(|prev| !in_timeline.contains(*prev))
            .filter_map(|prev| OwnedEventId::try_from(prev.as_str()).ok())
            .collect();
        if points.is_empty() {
            return Ok(None);
        }
        // The senders of the oldest events first: they were there then.
        let mut servers_first = Vec::new();
        for server in oldest.iter().filter_map(sender_server) {
            if !servers_first.contains(&server) {
                servers_first.push(server);
            }
        }
        Ok(Some(Missing {
            points,
            ceiling,
            servers_first,
            gap_before: None,
        }))
    }

    /// Asks the servers in the room for the missing history, one after the
    /// other, and hands what the first to answer gave to the room's writer.
    async fn fetch_missing(
        &self,
        room_id: &str,
        missing: Missing,
        wanted: usize,
    ) -> Result<bool, MatrixError> {
        let Some(first) = missing.points.first() else {
            return Ok(false);
        };
        let members = self.store.room_memberships(room_id).await?;
        if !self.has_local_member(&members) || !self.backfills.try_now(room_id, first.as_str()) {
            return Ok(false);
        }
        let Some(record) = self.store.room(room_id).await? else {
            return Ok(false);
        };
        let Some(version) = RoomVersion::stable(&record.room_version) else {
            return Ok(false);
        };
        let Ok(room) = OwnedRoomId::try_from(room_id) else {
            return Ok(false);
        };
        let mut servers: Vec<OwnedServerName> = Vec::new();
        let candidates = missing
            .servers_first
            .iter()
            .cloned()
            .chain(self.member_servers(&members));
        for server in candidates {
            if server.as_str() != self.server_name && !servers.contains(&server) {
                servers.push(server);
            }
        }
        let limit = ruma::UInt::try_from(wanted.clamp(1, MAX_BACKFILL)).unwrap_or_default();
        for server in servers.iter().take(MAX_SERVERS) {
            let request =
                get_backfill::v1::Request::new(room.clone(), missing.points.clone(), limit);
            let pdus = match self.federation.send(server, request).await {
                Ok(answer) => answer.pdus,
                Err(error) => {
                    tracing::info!(%server, %room_id, %error, "could not fetch a room's history");
                    continue;
                }
            };
            let remote = RemoteRoom {
                client: &self.federation,
                keys: &self.server_keys,
                server,
                room_id,
                version: &version,
            };
            return self
                .keep_history(&remote, &pdus, missing.ceiling, missing.gap_before)
                .await;
        }
        Ok(false)
    }

    /// Checks fetched history, keeps it as outliers with the state each
    /// event needs, and hands it to the room's writer.
    async fn keep_history(
        &self,
        remote: &RemoteRoom<'_>,
        pdus: &[Box<serde_json::value::RawValue>],
        ceiling: i64,
        gap_before: Option<String>,
    ) -> Result<bool, MatrixError> {
        let mut checked: Vec<CheckedPdu> = Vec::new();
        for raw in pdus.iter().take(MAX_BACKFILL) {
            // Only what came before: nothing newer is slipped into the past.
            if let Some(event) = remote.check(raw).await
                && event.pdu.depth < ceiling
            {
                checked.push(event);
            }
        }
        if checked.is_empty() {
            return Ok(false);
        }
        checked.sort_by(|a, b| (a.pdu.depth, &a.event_id).cmp(&(b.pdu.depth, &b.event_id)));
        checked.dedup_by(|a, b| a.event_id == b.event_id);
        self.store
            .store_outliers(checked.iter().map(CheckedPdu::outlier).collect())
            .await?;
        // Events whose prev_events are neither in this batch nor held with
        // their state here need the state before them from the server.
        let batch: HashSet<&str> = checked
            .iter()
            .map(|event| event.event_id.as_str())
            .collect();
        let mut events = Vec::with_capacity(checked.len());
        let mut state_fetches = 0;
        for event in &checked {
            let mut known = true;
            for prev in &event.pdu.prev_events {
                if batch.contains(prev.as_str()) {
                    continue;
                }
                let has_state = self
                    .store
                    .event_state_ids(prev.as_str())
                    .await?
                    .is_some_and(|ids| ids.after.is_some());
                known &= has_state;
            }
            let state_ids = if known {
                None
            } else {
                if state_fetches == MAX_STATE_FETCHES {
                    None
                } else {
                    state_fetches += 1;
                    remote.state_before(self.store.as_ref(), &event.event_id).await
                        .unwrap_or_else(|error| {
                        tracing::info!(event_id = %event.event_id, %error, "no state for fetched history");
                        None
                    })
                }
            };
            events.push(BackfilledEvent {
                event_id: event.event_id.clone(),
                state_ids,
            });
        }
        let done = myelin_process::request_room_input(
            self.bus.as_ref(),
            Partition::of_room(remote.room_id),
            RoomInput::Backfill(BackfilledEvents {
                room_id: remote.room_id.to_owned(),
                events,
                gap_before,
            }),
        )
        .await?;
        Ok(!done.event_id.is_empty())
    }
}

/// The server of an event's sender.
fn sender_server(event: &StoredEvent) -> Option<OwnedServerName> {
    ruma::OwnedUserId::try_from(event.sender.as_str())
        .ok()
        .map(|sender| sender.server_name().to_owned())
}

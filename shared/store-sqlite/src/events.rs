//! Events, current state, extremities and transaction IDs.

use async_trait::async_trait;
use myelin_store::{
    Direction, EventStore, Membership, PersistEvent, PersistOutcome, RoomRecord, StoreError,
    StoreResult, StoredEvent, TxnKey,
};
use myelin_types::{StreamPosition, TimelinePoint};
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

/// Read from `events AS e`; the last column is the PDU of the redaction
/// that pruned the event, if one did.
pub(crate) const EVENT_COLUMNS: &str = "e.position, e.event_id, e.room_id, e.sender, e.event_type, \
     e.state_key, e.depth, e.origin_server_ts, e.pdu_json, e.txn_user_id, e.txn_device_id, \
     e.txn_id, e.redacted_by, \
     (SELECT r.pdu_json FROM events AS r WHERE r.event_id = e.redacted_by), e.slot, e.opens_gap";

pub(crate) fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let txn_user_id: Option<String> = row.get(9)?;
    let txn_device_id: Option<String> = row.get(10)?;
    let txn_id: Option<String> = row.get(11)?;
    let txn = match (txn_user_id, txn_device_id, txn_id) {
        (Some(user_id), Some(device_id), Some(txn_id)) => Some(TxnKey {
            user_id,
            device_id,
            txn_id,
        }),
        _ => None,
    };
    Ok(StoredEvent {
        position: StreamPosition(row.get(0)?),
        event_id: row.get(1)?,
        room_id: row.get(2)?,
        sender: row.get(3)?,
        event_type: row.get(4)?,
        state_key: row.get(5)?,
        depth: row.get(6)?,
        origin_server_ts: row.get(7)?,
        pdu_json: row.get(8)?,
        txn,
        redacted_by: row.get(12)?,
        redaction_pdu_json: row.get(13)?,
        slot: StreamPosition(row.get(14)?),
        opens_gap: row.get(15)?,
    })
}

fn membership_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        room_id: row.get(0)?,
        user_id: row.get(1)?,
        membership: row.get(2)?,
        event_id: row.get(3)?,
        position: StreamPosition(row.get(4)?),
    })
}

fn persist(tx: &rusqlite::Transaction<'_>, event: &PersistEvent) -> StoreResult<PersistOutcome> {
    if let Some(fence) = event.fence {
        crate::leases::check_fence(tx, fence)?;
    }
    if let Some(txn) = &event.txn {
        let existing: Option<String> = tx.prepare_cached("SELECT event_id FROM txn_ids WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3").and_then(|mut statement| statement.query_row([&txn.user_id, &txn.device_id, &txn.txn_id],
                |row| row.get(0),))
            .optional()
            .map_err(map_error)?;
        if let Some(event_id) = existing {
            return Ok(PersistOutcome::DuplicateTxn { event_id });
        }
        tx.prepare_cached(
            "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut statement| {
            statement.execute([&txn.user_id, &txn.device_id, &txn.txn_id, &event.event_id])
        })
        .map_err(map_error)?;
    }
    if let Some(room_version) = &event.new_room_version {
        tx.prepare_cached("INSERT INTO rooms (room_id, room_version, creator) VALUES (?1, ?2, ?3)")
            .and_then(|mut statement| {
                statement.execute([&event.room_id, room_version, &event.sender])
            })
            .map_err(map_error)?;
    }
    let txn = event.txn.as_ref();
    if let Some(snapshots) = &event.snapshots {
        crate::snapshots::write_snapshots(tx, &event.room_id, &snapshots.new)?;
    }
    let snapshots = event.snapshots.as_ref();
    tx.prepare_cached("INSERT INTO events (event_id, room_id, sender, event_type, state_key, depth, origin_server_ts,
                             pdu_json, txn_user_id, txn_device_id, txn_id, state_before, state_after, opens_gap)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)").and_then(|mut statement| statement.execute(params![
            event.event_id,
            event.room_id,
            event.sender,
            event.event_type,
            event.state_key,
            event.depth,
            event.origin_server_ts,
            event.pdu_json,
            txn.map(|t| &t.user_id),
            txn.map(|t| &t.device_id),
            txn.map(|t| &t.txn_id),
            snapshots.map(|s| &s.before),
            snapshots.map(|s| &s.after),
            event.opens_gap,
        ],))
    .map_err(map_error)?;
    let position = tx.last_insert_rowid();
    crate::relations::index_event(tx, &event.into(), position)?;
    if let Some(changes) = &event.resolved_state {
        for change in changes {
            // Each key takes the position of the event that holds it.
            tx.prepare_cached(
                "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership, position)
                 SELECT ?1, ?2, ?3, ?4, ?5, position FROM events WHERE event_id = ?4
                 ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET
                     event_id = excluded.event_id, membership = excluded.membership,
                     position = excluded.position",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    event.room_id,
                    change.entry.event_type,
                    change.entry.state_key,
                    change.entry.event_id,
                    change.membership
                ])
            })
            .map_err(map_error)?;
        }
    } else if let Some(state_key) = &event.state_key {
        tx.prepare_cached("INSERT INTO current_state (room_id, event_type, state_key, event_id, membership, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET
                 event_id = excluded.event_id, membership = excluded.membership, position = excluded.position").and_then(|mut statement| statement.execute(params![event.room_id, event.event_type, state_key, event.event_id, event.membership, position],))
        .map_err(map_error)?;
    }
    if event.membership.as_deref() == Some("join")
        && let Some(user_id) = &event.state_key
    {
        tx.prepare_cached("DELETE FROM forgotten_rooms WHERE user_id = ?1 AND room_id = ?2")
            .and_then(|mut statement| statement.execute([user_id, &event.room_id]))
            .map_err(map_error)?;
    }
    for member in event.members_no_longer_joined() {
        crate::keys::forget_unshared_device_lists(tx, &event.room_id, member)?;
    }
    for prev in &event.prev_events {
        tx.prepare_cached("DELETE FROM forward_extremities WHERE room_id = ?1 AND event_id = ?2")
            .and_then(|mut statement| statement.execute([&event.room_id, prev]))
            .map_err(map_error)?;
    }
    tx.prepare_cached(
        "INSERT INTO forward_extremities (room_id, event_id, depth) VALUES (?1, ?2, ?3)",
    )
    .and_then(|mut statement| {
        statement.execute(params![event.room_id, event.event_id, event.depth])
    })
    .map_err(map_error)?;
    crate::notifications::insert_push_actions(tx, event, position)?;
    if let Some(redaction) = &event.redaction {
        apply_redaction(
            tx,
            &event.event_id,
            &redaction.target_event_id,
            &redaction.pruned_pdu_json,
        )?;
    }
    if let Some(redaction) = &event.redacted_on_arrival {
        apply_redaction(
            tx,
            &redaction.redaction_event_id,
            &event.event_id,
            &redaction.pruned_pdu_json,
        )?;
    }
    Ok(PersistOutcome::Persisted(StreamPosition(position)))
}

/// Replaces the target's PDU by its pruned form and drops it from both
/// indexes; a redaction waiting for it is done.
pub(crate) fn apply_redaction(
    tx: &rusqlite::Transaction<'_>,
    redaction_event_id: &str,
    target_event_id: &str,
    pruned_pdu_json: &str,
) -> StoreResult<()> {
    tx.prepare_cached("UPDATE events SET pdu_json = ?2, redacted_by = ?3 WHERE event_id = ?1")
        .and_then(|mut statement| {
            statement.execute([target_event_id, pruned_pdu_json, redaction_event_id])
        })
        .map_err(map_error)?;
    crate::relations::unindex_event(tx, target_event_id)?;
    tx.prepare_cached("DELETE FROM waiting_redactions WHERE target_event_id = ?1")
        .and_then(|mut statement| statement.execute([target_event_id]))
        .map_err(map_error)?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn persist_event(&self, event: PersistEvent) -> StoreResult<PersistOutcome> {
        self.write(move |tx| persist(tx, &event)).await
    }

    async fn persist_events(&self, events: Vec<PersistEvent>) -> StoreResult<Vec<StreamPosition>> {
        // An error drops the transaction before its commit: nothing is written.
        self.write(move |tx| {
            events
                .iter()
                .map(|event| match persist(tx, event)? {
                    PersistOutcome::Persisted(position) => Ok(position),
                    PersistOutcome::DuplicateTxn { .. } => Err(StoreError::Conflict(
                        "a transaction ID in the batch was used before".to_owned(),
                    )),
                })
                .collect()
        })
        .await
    }

    async fn event(&self, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id = ?1"
            ))
            .and_then(|mut statement| statement.query_row([event_id], event_from_row))
            .optional()
        })
        .await
    }

    async fn room(&self, room_id: &str) -> StoreResult<Option<RoomRecord>> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT room_id, room_version, creator, visibility_below FROM rooms WHERE room_id = ?1",
            )
            .and_then(|mut statement| {
                statement.query_row([room_id], |row| {
                    Ok(RoomRecord {
                        room_id: row.get(0)?,
                        room_version: row.get(1)?,
                        creator: row.get(2)?,
                        visibility_below: row.get(3)?,
                    })
                })
            })
            .optional()
        })
        .await
    }

    async fn current_state(&self, room_id: &str) -> StoreResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id IN
                     (SELECT event_id FROM current_state WHERE room_id = ?1)
                 ORDER BY position"
            ))?;
            let rows = statement.query_map([room_id], event_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Option<StoredEvent>> {
        let keys = [
            room_id.to_owned(),
            event_type.to_owned(),
            state_key.to_owned(),
        ];
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id =
                         (SELECT event_id FROM current_state
                          WHERE room_id = ?1 AND event_type = ?2 AND state_key = ?3)"
            ))
            .and_then(|mut statement| statement.query_row(keys, event_from_row))
            .optional()
        })
        .await
    }

    async fn state_event_at(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        at: StreamPosition,
    ) -> StoreResult<Option<StoredEvent>> {
        let keys = (
            room_id.to_owned(),
            event_type.to_owned(),
            state_key.to_owned(),
        );
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e
                     WHERE room_id = ?1 AND event_type = ?2 AND state_key = ?3 AND position <= ?4
                     ORDER BY position DESC LIMIT 1"
            ))
            .and_then(|mut statement| {
                statement.query_row(params![keys.0, keys.1, keys.2, at.0], event_from_row)
            })
            .optional()
        })
        .await
    }

    async fn state_at(&self, room_id: &str, at: StreamPosition) -> StoreResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        self.read_in_pool(move |conn| {
            // The newest event per type and key at or below `at`, found
            // through the (room, type, key, position) index.
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e
                 WHERE e.room_id = ?1 AND e.state_key IS NOT NULL AND e.position = (
                     SELECT MAX(position) FROM events
                     WHERE room_id = e.room_id AND event_type = e.event_type
                       AND state_key = e.state_key AND position <= ?2 AND NOT outlier)
                 ORDER BY e.position"
            ))?;
            let rows = statement.query_map(params![room_id, at.0], event_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn state_history(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Vec<StoredEvent>> {
        let keys = [
            room_id.to_owned(),
            event_type.to_owned(),
            state_key.to_owned(),
        ];
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e
                 WHERE room_id = ?1 AND event_type = ?2 AND state_key = ?3 AND NOT e.outlier
                 ORDER BY position"
            ))?;
            let rows = statement.query_map(keys, event_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn forward_extremities(&self, room_id: &str) -> StoreResult<Vec<(String, i64)>> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT event_id, depth FROM forward_extremities WHERE room_id = ?1 ORDER BY depth, event_id",
            )?;
            let rows = statement.query_map([room_id], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn room_events(
        &self,
        room_id: &str,
        from: TimelinePoint,
        to: Option<TimelinePoint>,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        let limit = limit as i64;
        self.read(move |conn| {
            let (sql, bound) = match direction {
                Direction::Backward => (
                    format!(
                        "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = ?1 AND NOT e.outlier
                         AND (slot, position) <= (?2, ?3) AND (slot, position) > (?4, ?5)
                         ORDER BY slot DESC, position DESC LIMIT ?6"
                    ),
                    to.unwrap_or(TimelinePoint::BEFORE_ALL),
                ),
                Direction::Forward => (
                    format!(
                        "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = ?1 AND NOT e.outlier
                         AND (slot, position) > (?2, ?3) AND (slot, position) <= (?4, ?5)
                         ORDER BY slot ASC, position ASC LIMIT ?6"
                    ),
                    to.unwrap_or(TimelinePoint::AFTER_ALL),
                ),
            };
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(
                params![
                    room_id,
                    from.slot.0,
                    from.position.0,
                    bound.slot.0,
                    bound.position.0,
                    limit
                ],
                event_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn events_after(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE NOT e.outlier AND position > ?1 AND position <= ?2
                 ORDER BY position ASC LIMIT ?3"
            ))?;
            let rows = statement.query_map(params![after.0, upto.0, limit], event_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn max_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| {
            conn.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                .map(StreamPosition)
        })
        .await
    }

    async fn memberships_of_user(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT room_id, state_key, membership, event_id, position FROM current_state
                 WHERE state_key = ?1 AND event_type = 'm.room.member'
                 AND room_id NOT IN (SELECT room_id FROM forgotten_rooms WHERE user_id = ?1)
                 ORDER BY position",
            )?;
            let rows = statement.query_map([user_id], membership_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn room_memberships(&self, room_id: &str) -> StoreResult<Vec<Membership>> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT room_id, state_key, membership, event_id, position FROM current_state
                 WHERE room_id = ?1 AND event_type = 'm.room.member' ORDER BY position",
            )?;
            let rows = statement.query_map([room_id], membership_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn forget_room(&self, user_id: &str, room_id: &str) -> StoreResult<()> {
        let keys = [user_id.to_owned(), room_id.to_owned()];
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO forgotten_rooms (user_id, room_id) VALUES (?1, ?2)",
            )
            .and_then(|mut statement| statement.execute(keys))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn room_forgotten(&self, user_id: &str, room_id: &str) -> StoreResult<bool> {
        let keys = [user_id.to_owned(), room_id.to_owned()];
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM forgotten_rooms WHERE user_id = ?1 AND room_id = ?2")
                .and_then(|mut statement| statement.query_row(keys, |_| Ok(())))
                .optional()
                .map(|row| row.is_some())
        })
        .await
    }

    async fn txn_event_id(&self, txn: &TxnKey) -> StoreResult<Option<String>> {
        let keys = [
            txn.user_id.clone(),
            txn.device_id.clone(),
            txn.txn_id.clone(),
        ];
        self.read(move |conn| {
            conn.prepare_cached("SELECT event_id FROM txn_ids WHERE user_id = ?1 AND device_id = ?2 AND txn_id = ?3").and_then(|mut statement| statement.query_row(keys,
                |row| row.get(0),))
            .optional()
        })
        .await
    }
}

#[async_trait]
impl myelin_store::EventTimeStore for SqliteStore {
    async fn events_by_time(
        &self,
        room_id: &str,
        ts: i64,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let room_id = room_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let sql = match direction {
                Direction::Forward => format!(
                    "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = ?1 AND NOT e.outlier AND origin_server_ts >= ?2
                     ORDER BY origin_server_ts ASC, position ASC LIMIT ?3"
                ),
                Direction::Backward => format!(
                    "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = ?1 AND NOT e.outlier AND origin_server_ts <= ?2
                     ORDER BY origin_server_ts DESC, position DESC LIMIT ?3"
                ),
            };
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![room_id, ts, limit], event_from_row)?;
            rows.collect()
        })
        .await
    }
}

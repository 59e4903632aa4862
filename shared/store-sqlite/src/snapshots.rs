//! The room's state at each event.

use async_trait::async_trait;
use myelin_store::{
    EventStateIds, FetchedInto, IndexedEvent, MAX_SNAPSHOT_CHAIN, NewSnapshot, OutlierEvent,
    PromotedEvent, Snapshot, SnapshotStore, StateEntry, StoreResult, StoredEvent, fold_chain,
};
use rusqlite::{OptionalExtension, params};

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::{SqliteStore, map_error};

/// Writes snapshots that do not exist yet; one that does is left as it is
/// (a snapshot's name fixes its content).
pub(crate) fn write_snapshots(
    tx: &rusqlite::Transaction<'_>,
    room_id: &str,
    snapshots: &[NewSnapshot],
) -> StoreResult<()> {
    for snapshot in snapshots {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO state_snapshots (snapshot_id, room_id, base_id, chain_length)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (snapshot_id) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    snapshot.snapshot_id,
                    room_id,
                    snapshot.base_id,
                    snapshot.chain_length
                ])
            })
            .map_err(map_error)?;
        if inserted == 0 {
            continue;
        }
        let mut insert_entry = tx
            .prepare_cached(
                "INSERT INTO state_snapshot_entries (snapshot_id, event_type, state_key, event_id)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(map_error)?;
        for entry in &snapshot.entries {
            insert_entry
                .execute(params![
                    snapshot.snapshot_id,
                    entry.event_type,
                    entry.state_key,
                    entry.event_id
                ])
                .map_err(map_error)?;
        }
    }
    Ok(())
}

fn read_snapshot(
    conn: &rusqlite::Connection,
    snapshot_id: &str,
) -> rusqlite::Result<Option<Snapshot>> {
    let chain_length: Option<i64> = conn
        .prepare_cached("SELECT chain_length FROM state_snapshots WHERE snapshot_id = ?1")?
        .query_row([snapshot_id], |row| row.get(0))
        .optional()?;
    let Some(chain_length) = chain_length else {
        return Ok(None);
    };
    // The chain from this snapshot down to its complete base, entries of the
    // base first; the step bound stops a damaged chain from looping.
    let entries = conn
        .prepare_cached(
            "WITH RECURSIVE chain (snapshot_id, base_id, step) AS (
                 SELECT snapshot_id, base_id, 0 FROM state_snapshots WHERE snapshot_id = ?1
                 UNION ALL
                 SELECT s.snapshot_id, s.base_id, c.step + 1
                 FROM state_snapshots AS s JOIN chain AS c ON s.snapshot_id = c.base_id
                 WHERE c.step < ?2
             )
             SELECT e.event_type, e.state_key, e.event_id
             FROM chain AS c JOIN state_snapshot_entries AS e ON e.snapshot_id = c.snapshot_id
             ORDER BY c.step DESC",
        )?
        .query_map(params![snapshot_id, MAX_SNAPSHOT_CHAIN + 1], |row| {
            Ok(StateEntry {
                event_type: row.get(0)?,
                state_key: row.get(1)?,
                event_id: row.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Snapshot {
        chain_length,
        entries: fold_chain(entries),
    }))
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn snapshot(&self, snapshot_id: &str) -> StoreResult<Option<Snapshot>> {
        let snapshot_id = snapshot_id.to_owned();
        self.read_in_pool(move |conn| read_snapshot(conn, &snapshot_id))
            .await
    }

    async fn events_by_id(&self, event_ids: &[String]) -> StoreResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            // Callers often have nothing to look up: no trip to a reader.
            return Ok(Vec::new());
        }
        let event_ids = event_ids.to_vec();
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.event_id = ?1"
            ))?;
            let mut found = Vec::with_capacity(event_ids.len());
            for event_id in &event_ids {
                if let Some(event) = statement.query_row([event_id], event_from_row).optional()? {
                    found.push(event);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn store_outliers(&self, events: Vec<OutlierEvent>) -> StoreResult<()> {
        self.write(move |tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (event_id, room_id, sender, event_type, state_key, depth,
                                         origin_server_ts, pdu_json, outlier, soft_failed)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)
                     ON CONFLICT (event_id) DO NOTHING",
                )
                .map_err(map_error)?;
            for event in &events {
                insert
                    .execute(params![
                        event.event_id,
                        event.room_id,
                        event.sender,
                        event.event_type,
                        event.state_key,
                        event.depth,
                        event.origin_server_ts,
                        event.pdu_json,
                        event.soft_failed
                    ])
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn set_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
        stripped_state: &str,
    ) -> StoreResult<()> {
        let (room_id, user_id, stripped_state) = (
            room_id.to_owned(),
            user_id.to_owned(),
            stripped_state.to_owned(),
        );
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO invite_states (room_id, user_id, stripped_state) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room_id, user_id) DO UPDATE SET stripped_state = excluded.stripped_state",
            )
            .and_then(|mut statement| statement.execute([&room_id, &user_id, &stripped_state]))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn invite_state(&self, room_id: &str, user_id: &str) -> StoreResult<Option<String>> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT stripped_state FROM invite_states WHERE room_id = ?1 AND user_id = ?2",
            )?
            .query_row([room_id, user_id], |row| row.get(0))
            .optional()
        })
        .await
    }

    async fn timeline_ids(&self, event_ids: &[String]) -> StoreResult<Vec<String>> {
        let event_ids = event_ids.to_vec();
        self.read_in_pool(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1 AND NOT outlier")?;
            let mut found = Vec::new();
            for event_id in event_ids {
                if statement.exists([&event_id])? {
                    found.push(event_id);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn promote_outliers(
        &self,
        room_id: &str,
        events: Vec<PromotedEvent>,
        into: FetchedInto,
        fence: Option<myelin_store::Fence>,
    ) -> StoreResult<()> {
        let room_id = room_id.to_owned();
        let gap_slot = match &into {
            FetchedInto::Gap { slot } => Some(slot.0),
            FetchedInto::Start { .. } => None,
        };
        self.write(move |tx| {
            if let Some(fence) = fence {
                crate::leases::check_fence(tx, fence)?;
            }
            // One writer at a time: the lowest position so far is stable here.
            let lowest: i64 = tx
                .prepare_cached("SELECT COALESCE(MIN(position), 0) FROM events")
                .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
                .map_err(map_error)?;
            let mut next = lowest.min(0) - i64::try_from(events.len()).unwrap_or(i64::MAX);
            for event in &events {
                crate::snapshots::write_snapshots(tx, &room_id, &event.snapshots.new)?;
                if promote_one(tx, &room_id, event, next, gap_slot)? {
                    next += 1;
                    for redaction in &event.redactions {
                        crate::events::apply_redaction(
                            tx,
                            &redaction.redaction_event_id,
                            &redaction.target_event_id,
                            &redaction.pruned_pdu_json,
                        )?;
                    }
                }
            }
            if let FetchedInto::Start { visibility_below } = &into {
                tx.prepare_cached("UPDATE rooms SET visibility_below = ?2 WHERE room_id = ?1")
                    .and_then(|mut statement| statement.execute([&room_id, visibility_below]))
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn remember_redaction(
        &self,
        room_id: &str,
        target_event_id: &str,
        redaction_event_id: &str,
    ) -> StoreResult<()> {
        let ids = [
            target_event_id.to_owned(),
            room_id.to_owned(),
            redaction_event_id.to_owned(),
        ];
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO waiting_redactions
                     (target_event_id, room_id, redaction_event_id) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut statement| statement.execute(ids))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn redactions_wait_in(&self, room_id: &str) -> StoreResult<bool> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT 1 FROM waiting_redactions AS w WHERE w.room_id = ?1
                   AND NOT EXISTS (SELECT 1 FROM events AS e
                               WHERE e.event_id = w.target_event_id AND NOT e.outlier)
                 LIMIT 1",
            )?
            .query_row([room_id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
        })
        .await
    }

    async fn waiting_redactions(
        &self,
        room_id: &str,
        target_event_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        if target_event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let room_id = room_id.to_owned();
        let targets = serde_json::to_string(target_event_ids).unwrap_or_else(|_| "[]".into());
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT w.target_event_id, w.redaction_event_id FROM waiting_redactions AS w
                 JOIN events AS r ON r.event_id = w.redaction_event_id
                 WHERE w.target_event_id IN (SELECT value FROM json_each(?1))
                   AND w.room_id = ?2 AND r.room_id = ?2 AND NOT r.outlier
                 ORDER BY r.position",
            )?;
            let rows = statement.query_map(params![targets, room_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
            rows.collect()
        })
        .await
    }

    async fn event_state_ids(&self, event_id: &str) -> StoreResult<Option<EventStateIds>> {
        let event_id = event_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT state_before, state_after FROM events WHERE event_id = ?1")?
                .query_row([event_id], |row| {
                    Ok(EventStateIds {
                        before: row.get(0)?,
                        after: row.get(1)?,
                    })
                })
                .optional()
        })
        .await
    }
}

/// Moves one outlier of the room to `position` in the timeline and indexes
/// it as a new event would be; false when it was no outlier of the room.
fn promote_one(
    tx: &rusqlite::Transaction<'_>,
    room_id: &str,
    event: &PromotedEvent,
    position: i64,
    gap_slot: Option<i64>,
) -> StoreResult<bool> {
    type Row = (i64, String, String, Option<String>, i64, String, bool);
    let row: Option<Row> = tx
        .prepare_cached(
            "SELECT position, sender, event_type, state_key, origin_server_ts, pdu_json,
                    redacted_by IS NOT NULL
             FROM events WHERE event_id = ?1 AND room_id = ?2 AND outlier AND NOT soft_failed",
        )
        .and_then(|mut statement| {
            statement
                .query_row([&event.event_id, room_id], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                        row.get(5)?,
                        row.get(6)?,
                    ))
                })
                .optional()
        })
        .map_err(map_error)?;
    let Some((old_position, sender, event_type, state_key, origin_server_ts, pdu_json, redacted)) =
        row
    else {
        return Ok(false);
    };
    tx.prepare_cached(
        "UPDATE events SET position = ?1, outlier = 0, state_before = ?2, state_after = ?3,
                           gap_slot = ?5
         WHERE event_id = ?4",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            position,
            event.snapshots.before,
            event.snapshots.after,
            event.event_id,
            gap_slot
        ])
    })
    .map_err(map_error)?;
    // Text an earlier build indexed at the outlier's position goes with it.
    tx.prepare_cached("DELETE FROM event_search WHERE rowid = ?1")
        .and_then(|mut statement| statement.execute([old_position]))
        .map_err(map_error)?;
    if !redacted {
        let indexed = IndexedEvent {
            event_id: &event.event_id,
            room_id,
            sender: &sender,
            event_type: &event_type,
            state_key: state_key.as_deref(),
            origin_server_ts,
            pdu_json: &pdu_json,
        };
        crate::relations::index_event(tx, &indexed, position)?;
        crate::relations::index_search_text(
            tx,
            position,
            &event_type,
            state_key.as_deref(),
            &pdu_json,
        )?;
    }
    Ok(true)
}

//! The room's state at each event.

use async_trait::async_trait;
use deadpool_postgres::Transaction;
use myelin_store::{
    EventStateIds, FetchedInto, IndexedEvent, MAX_SNAPSHOT_CHAIN, NewSnapshot, OutlierEvent,
    PromotedEvent, Snapshot, SnapshotStore, StateEntry, StoreResult, StoredEvent, fold_chain,
};

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::pipeline::{Pipeline, params};
use crate::{PostgresStore, get, map_error, tx_execute, tx_query_opt};
use myelin_store::StoreError;

/// Queues the snapshots that do not exist yet; one that does is left as
/// it is (a snapshot's name fixes its content). One statement each, for
/// the whole state, which may be thousands of rows.
pub(crate) fn queue_snapshots<'a>(
    pipeline: &mut Pipeline<'a>,
    room_id: &'a str,
    snapshots: &'a [NewSnapshot],
) {
    for snapshot in snapshots {
        let column = |field: fn(&StateEntry) -> &str| -> Vec<&'a str> {
            snapshot.entries.iter().map(field).collect()
        };
        pipeline.push(
            "WITH new AS (
                 INSERT INTO state_snapshots (snapshot_id, room_id, base_id, chain_length)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (snapshot_id) DO NOTHING
                 RETURNING snapshot_id)
             INSERT INTO state_snapshot_entries (snapshot_id, event_type, state_key, event_id)
             SELECT new.snapshot_id, entry.* FROM new,
                 unnest($5::text[], $6::text[], $7::text[]) AS entry",
            params![
                &snapshot.snapshot_id,
                room_id,
                &snapshot.base_id,
                snapshot.chain_length,
                column(|entry| &entry.event_type),
                column(|entry| &entry.state_key),
                column(|entry| &entry.event_id),
            ],
        );
    }
}

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn snapshot(&self, snapshot_id: &str) -> StoreResult<Option<Snapshot>> {
        let Some(chain_length) = self
            .query_opt(
                "SELECT chain_length FROM state_snapshots WHERE snapshot_id = $1",
                &[&snapshot_id],
                |row| get(row, 0),
            )
            .await?
        else {
            return Ok(None);
        };
        // The chain from this snapshot down to its complete base, entries of
        // the base first; the step bound stops a damaged chain from looping.
        let entries = self
            .query(
                "WITH RECURSIVE chain (snapshot_id, base_id, step) AS (
                     SELECT snapshot_id, base_id, 0::BIGINT FROM state_snapshots WHERE snapshot_id = $1
                     UNION ALL
                     SELECT s.snapshot_id, s.base_id, c.step + 1
                     FROM state_snapshots AS s JOIN chain AS c ON s.snapshot_id = c.base_id
                     WHERE c.step < $2
                 )
                 SELECT e.event_type, e.state_key, e.event_id
                 FROM chain AS c JOIN state_snapshot_entries AS e ON e.snapshot_id = c.snapshot_id
                 ORDER BY c.step DESC",
                &[&snapshot_id, &(MAX_SNAPSHOT_CHAIN + 1)],
                |row| {
                    Ok(StateEntry {
                        event_type: get(row, 0)?,
                        state_key: get(row, 1)?,
                        event_id: get(row, 2)?,
                    })
                },
            )
            .await?;
        Ok(Some(Snapshot {
            chain_length,
            entries: fold_chain(entries),
        }))
    }

    async fn events_by_id(&self, event_ids: &[String]) -> StoreResult<Vec<StoredEvent>> {
        if event_ids.is_empty() {
            // Callers often have nothing to look up: no round trip for it.
            return Ok(Vec::new());
        }
        self.query(
            &format!("SELECT {EVENT_COLUMNS} FROM events AS e WHERE e.event_id = ANY($1)"),
            &[&event_ids],
            event_from_row,
        )
        .await
    }

    async fn store_outliers(&self, events: Vec<OutlierEvent>) -> StoreResult<()> {
        let ids: Vec<&str> = events.iter().map(|event| event.event_id.as_str()).collect();
        let known: std::collections::HashSet<String> = self
            .query(
                "SELECT event_id FROM events WHERE event_id = ANY($1)",
                &[&ids],
                |row| get(row, 0),
            )
            .await?
            .into_iter()
            .collect();
        let new: Vec<&OutlierEvent> = events
            .iter()
            .filter(|event| !known.contains(&event.event_id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        // Positions come from the same counter as every event's, taken in a
        // statement of their own: a join's thousands of state events must
        // not hold the counter's row lock, which every send waits for, while
        // they are written. Outliers are in no stream, so readers that see
        // the counter past them before they commit miss nothing.
        let count = i64::try_from(new.len()).unwrap_or(i64::MAX);
        let top: i64 = self
            .query_opt(
                "UPDATE stream_position SET position = position + $1 RETURNING position",
                &[&count],
                |row| get(row, 0),
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("stream_position has no row".to_owned()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        for (position, event) in (top - count + 1..).zip(new) {
            // One stored meanwhile by another writer keeps its own position.
            tx_execute(
                &tx,
                "INSERT INTO events (position, event_id, room_id, sender, event_type, state_key,
                                     depth, origin_server_ts, pdu_json, outlier, soft_failed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, TRUE, $10)
                 ON CONFLICT (event_id) DO NOTHING",
                &[
                    &position,
                    &event.event_id,
                    &event.room_id,
                    &event.sender,
                    &event.event_type,
                    &event.state_key,
                    &event.depth,
                    &event.origin_server_ts,
                    &event.pdu_json,
                    &event.soft_failed,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn set_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
        stripped_state: &str,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO invite_states (room_id, user_id, stripped_state) VALUES ($1, $2, $3)
             ON CONFLICT (room_id, user_id) DO UPDATE SET stripped_state = excluded.stripped_state",
            &[&room_id, &user_id, &stripped_state],
        )
        .await
        .map(|_| ())
    }

    async fn invite_state(&self, room_id: &str, user_id: &str) -> StoreResult<Option<String>> {
        self.query_opt(
            "SELECT stripped_state FROM invite_states WHERE room_id = $1 AND user_id = $2",
            &[&room_id, &user_id],
            |row| get(row, 0),
        )
        .await
    }

    async fn timeline_ids(&self, event_ids: &[String]) -> StoreResult<Vec<String>> {
        self.query(
            "SELECT event_id FROM events WHERE event_id = ANY($1) AND NOT outlier",
            &[&event_ids],
            |row| get(row, 0),
        )
        .await
    }

    async fn promote_outliers(
        &self,
        room_id: &str,
        events: Vec<PromotedEvent>,
        into: FetchedInto,
        fence: Option<myelin_store::Fence>,
    ) -> StoreResult<()> {
        let gap_slot = match &into {
            FetchedInto::Gap { slot } => Some(slot.0),
            FetchedInto::Start { .. } => None,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        if let Some(fence) = fence {
            crate::leases::check_fence(&tx, fence).await?;
        }
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        // The row lock on the counter is held to commit: one batch at a time.
        let lowest: i64 = tx_query_opt(
            &tx,
            "UPDATE backfill_position SET position = position - $1 RETURNING position",
            &[&count],
            |row| get(row, 0),
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("backfill_position has no row".to_owned()))?;
        let mut next = lowest;
        for event in &events {
            let mut snapshots = Pipeline::default();
            queue_snapshots(&mut snapshots, room_id, &event.snapshots.new);
            snapshots.run(&tx).await?;
            if promote_one(&tx, room_id, event, next, gap_slot).await? {
                next += 1;
            }
        }
        if let FetchedInto::Start { visibility_below } = &into {
            tx_execute(
                &tx,
                "UPDATE rooms SET visibility_below = $2 WHERE room_id = $1",
                &[&room_id, visibility_below],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn remember_redaction(
        &self,
        room_id: &str,
        target_event_id: &str,
        redaction_event_id: &str,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO waiting_redactions (target_event_id, room_id, redaction_event_id)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&target_event_id, &room_id, &redaction_event_id],
        )
        .await
        .map(|_| ())
    }

    async fn redactions_wait_in(&self, room_id: &str) -> StoreResult<bool> {
        self.query_opt(
            "SELECT 1 FROM waiting_redactions AS w WHERE w.room_id = $1
               AND NOT EXISTS (SELECT 1 FROM events AS e
                               WHERE e.event_id = w.target_event_id AND NOT e.outlier)
             LIMIT 1",
            &[&room_id],
            |_| Ok(()),
        )
        .await
        .map(|found| found.is_some())
    }

    async fn waiting_redactions(
        &self,
        room_id: &str,
        target_event_ids: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        if target_event_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.query(
            "SELECT w.target_event_id, w.redaction_event_id FROM waiting_redactions AS w
             JOIN events AS r ON r.event_id = w.redaction_event_id
             WHERE w.target_event_id = ANY($1) AND w.room_id = $2 AND r.room_id = $2
               AND NOT r.outlier
             ORDER BY r.position",
            &[&target_event_ids, &room_id],
            |row| Ok((get(row, 0)?, get(row, 1)?)),
        )
        .await
    }

    async fn event_state_ids(&self, event_id: &str) -> StoreResult<Option<EventStateIds>> {
        self.query_opt(
            "SELECT state_before, state_after FROM events WHERE event_id = $1",
            &[&event_id],
            |row| {
                Ok(EventStateIds {
                    before: get(row, 0)?,
                    after: get(row, 1)?,
                })
            },
        )
        .await
    }
}

/// Moves one outlier of the room to `position` in the timeline and indexes
/// it as a new event would be; false when it was no outlier of the room.
async fn promote_one(
    tx: &Transaction<'_>,
    room_id: &str,
    event: &PromotedEvent,
    position: i64,
    gap_slot: Option<i64>,
) -> StoreResult<bool> {
    let row = tx
        .query_opt(
            "UPDATE events SET position = $1, outlier = FALSE, state_before = $2, state_after = $3,
                               gap_slot = $6
             WHERE event_id = $4 AND room_id = $5 AND outlier AND NOT soft_failed
             RETURNING sender, event_type, state_key, origin_server_ts, pdu_json,
                       redacted_by IS NOT NULL",
            &[
                &position,
                &event.snapshots.before,
                &event.snapshots.after,
                &event.event_id,
                &room_id,
                &gap_slot,
            ],
        )
        .await
        .map_err(map_error)?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (sender, event_type, state_key, pdu_json): (String, String, Option<String>, String) =
        (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 4)?);
    let redacted: bool = get(&row, 5)?;
    let mut pipeline = Pipeline::default();
    if !redacted {
        let indexed = IndexedEvent {
            event_id: &event.event_id,
            room_id,
            sender: &sender,
            event_type: &event_type,
            state_key: state_key.as_deref(),
            origin_server_ts: get(&row, 3)?,
            pdu_json: &pdu_json,
        };
        crate::relations::queue_index(&mut pipeline, &indexed);
    }
    for redaction in &event.redactions {
        crate::events::queue_redaction(
            &mut pipeline,
            &redaction.redaction_event_id,
            &redaction.target_event_id,
            &redaction.pruned_pdu_json,
        );
    }
    pipeline.run(tx).await?;
    Ok(true)
}

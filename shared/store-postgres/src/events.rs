//! Events, current state, extremities and transaction IDs.

use async_trait::async_trait;
use myelin_store::{
    Direction, EventStore, Fence, Membership, PersistEvent, PersistOutcome, RoomRecord, StoreError,
    StoreResult, StoredEvent, TxnKey,
};
use myelin_types::{StreamPosition, TimelinePoint};
use tokio_postgres::Row;

use crate::pipeline::{Answers, Pipeline, Slot, params};
use crate::{PostgresStore, get, map_error};

/// Read from `events AS e`; the last column is the PDU of the redaction
/// that pruned the event, if one did.
pub(crate) const EVENT_COLUMNS: &str = "e.position, e.event_id, e.room_id, e.sender, e.event_type, \
     e.state_key, e.depth, e.origin_server_ts, e.pdu_json, e.txn_user_id, e.txn_device_id, \
     e.txn_id, e.redacted_by, \
     (SELECT r.pdu_json FROM events AS r WHERE r.event_id = e.redacted_by), e.slot, e.opens_gap";

pub(crate) fn event_from_row(row: &Row) -> StoreResult<StoredEvent> {
    let txn_user_id: Option<String> = get(row, 9)?;
    let txn_device_id: Option<String> = get(row, 10)?;
    let txn_id: Option<String> = get(row, 11)?;
    let txn = match (txn_user_id, txn_device_id, txn_id) {
        (Some(user_id), Some(device_id), Some(txn_id)) => Some(TxnKey {
            user_id,
            device_id,
            txn_id,
        }),
        _ => None,
    };
    Ok(StoredEvent {
        position: StreamPosition(get(row, 0)?),
        event_id: get(row, 1)?,
        room_id: get(row, 2)?,
        sender: get(row, 3)?,
        event_type: get(row, 4)?,
        state_key: get(row, 5)?,
        depth: get(row, 6)?,
        origin_server_ts: get(row, 7)?,
        pdu_json: get(row, 8)?,
        txn,
        redacted_by: get(row, 12)?,
        redaction_pdu_json: get(row, 13)?,
        slot: StreamPosition(get(row, 14)?),
        opens_gap: get(row, 15)?,
    })
}

fn membership_from_row(row: &Row) -> StoreResult<Membership> {
    Ok(Membership {
        room_id: get(row, 0)?,
        user_id: get(row, 1)?,
        membership: get(row, 2)?,
        event_id: get(row, 3)?,
        position: StreamPosition(get(row, 4)?),
    })
}

/// What a batch reads back, in order: a fence's check, or an event's row.
enum Queued {
    Fence(Slot, Fence),
    Event(Slot),
}

/// Queues claiming a transaction ID for the event; no row back means it
/// was used before. DO NOTHING waits for a concurrent writer of the same
/// key and skips the row once that one commits, so a retry racing the
/// first attempt is reported as a duplicate, not as a conflict.
fn queue_txn_id<'a>(pipeline: &mut Pipeline<'a>, txn: &'a TxnKey, event_id: &'a str) -> Slot {
    pipeline.push(
        "INSERT INTO txn_ids (user_id, device_id, txn_id, event_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, device_id, txn_id) DO NOTHING RETURNING 1",
        params![&txn.user_id, &txn.device_id, &txn.txn_id, event_id],
    )
}

/// Queues one event's writes. The position is taken by the events row
/// itself, as late as the row allows: the row lock on stream_position is
/// held until commit, so writers commit in position order and a reader
/// who sees position p (max_position reads this row) also sees every event
/// below p. A sequence would hand out positions in start order but let
/// them commit in any order. Later rows find the position by event ID.
fn queue_event<'a>(pipeline: &mut Pipeline<'a>, event: &'a PersistEvent) -> Slot {
    if let Some(room_version) = &event.new_room_version {
        pipeline.push(
            "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3)",
            params![&event.room_id, room_version, &event.sender],
        );
    }
    let snapshots = event.snapshots.as_ref();
    if let Some(snapshots) = snapshots {
        crate::snapshots::queue_snapshots(pipeline, &event.room_id, &snapshots.new);
    }
    let txn_key = event.txn.as_ref();
    let row = pipeline.push(
        "WITH taken AS (UPDATE stream_position SET position = position + 1 RETURNING position)
         INSERT INTO events (position, event_id, room_id, sender, event_type, state_key, depth,
                             origin_server_ts, pdu_json, txn_user_id, txn_device_id, txn_id,
                             state_before, state_after, opens_gap)
         SELECT taken.position, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
         FROM taken
         RETURNING position",
        params![
            &event.event_id,
            &event.room_id,
            &event.sender,
            &event.event_type,
            &event.state_key,
            event.depth,
            event.origin_server_ts,
            &event.pdu_json,
            txn_key.map(|t| &t.user_id),
            txn_key.map(|t| &t.device_id),
            txn_key.map(|t| &t.txn_id),
            snapshots.map(|s| &s.before),
            snapshots.map(|s| &s.after),
            event.opens_gap,
        ],
    );
    crate::relations::queue_index(pipeline, &event.into());
    // Each key takes the position of the event that holds it.
    const CURRENT_STATE: &str =
        "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership, position)
         SELECT $1, $2, $3, $4, $5, position FROM events WHERE event_id = $4
         ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET
             event_id = excluded.event_id, membership = excluded.membership,
             position = excluded.position";
    if let Some(changes) = &event.resolved_state {
        for change in changes {
            pipeline.push(
                CURRENT_STATE,
                params![
                    &event.room_id,
                    &change.entry.event_type,
                    &change.entry.state_key,
                    &change.entry.event_id,
                    &change.membership,
                ],
            );
        }
    } else if let Some(state_key) = &event.state_key {
        pipeline.push(
            CURRENT_STATE,
            params![
                &event.room_id,
                &event.event_type,
                state_key,
                &event.event_id,
                &event.membership,
            ],
        );
    }
    if event.membership.as_deref() == Some("join")
        && let Some(user_id) = &event.state_key
    {
        pipeline.push(
            "DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2",
            params![user_id, &event.room_id],
        );
    }
    for member in event.members_no_longer_joined() {
        pipeline.push(
            crate::keys::forget_unshared_device_lists(),
            params![&event.room_id, member],
        );
    }
    pipeline.push(
        "DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = ANY($2)",
        params![&event.room_id, &event.prev_events],
    );
    pipeline.push(
        "INSERT INTO forward_extremities (room_id, event_id, depth) VALUES ($1, $2, $3)",
        params![&event.room_id, &event.event_id, event.depth],
    );
    crate::notifications::queue_push_actions(pipeline, event);
    if let Some(redaction) = &event.redaction {
        queue_redaction(
            pipeline,
            &event.event_id,
            &redaction.target_event_id,
            &redaction.pruned_pdu_json,
        );
    }
    if let Some(redaction) = &event.redacted_on_arrival {
        queue_redaction(
            pipeline,
            &redaction.redaction_event_id,
            &event.event_id,
            &redaction.pruned_pdu_json,
        );
    }
    row
}

/// The position the events row queued at `slot` took.
fn position_of(answers: &Answers, slot: Slot) -> StoreResult<StreamPosition> {
    let row = answers
        .rows(slot)
        .first()
        .ok_or_else(|| StoreError::Corrupt("stream_position has no row".to_owned()))?;
    Ok(StreamPosition(get(row, 0)?))
}

/// Replaces the target's PDU by its pruned form and drops it from both
/// indexes; a redaction waiting for it is done.
pub(crate) fn queue_redaction<'a>(
    pipeline: &mut Pipeline<'a>,
    redaction_event_id: &'a str,
    target_event_id: &'a str,
    pruned_pdu_json: &'a str,
) {
    pipeline.push(
        "UPDATE events SET pdu_json = $2, redacted_by = $3 WHERE event_id = $1",
        params![target_event_id, pruned_pdu_json, redaction_event_id],
    );
    crate::relations::queue_unindex(pipeline, target_event_id);
    pipeline.push(
        "DELETE FROM waiting_redactions WHERE target_event_id = $1",
        params![target_event_id],
    );
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn persist_event(&self, event: PersistEvent) -> StoreResult<PersistOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let mut pipeline = Pipeline::default();
        let fence = event.fence.map(|fence| {
            (
                crate::leases::queue_fence_check(&mut pipeline, fence),
                fence,
            )
        });
        // A transaction ID used before stops the write before anything
        // else is sent: a retry may carry the event already written.
        if let Some(txn) = &event.txn {
            let claimed = queue_txn_id(&mut pipeline, txn, &event.event_id);
            let answers = std::mem::take(&mut pipeline).run(&tx).await?;
            if let Some((slot, fence)) = fence {
                crate::leases::fence_holds(answers.rows(slot), fence)?;
            }
            if answers.rows(claimed).is_empty() {
                tx.rollback().await.map_err(map_error)?;
                // Back to the pool first: a burst of retries must not hold
                // two connections each.
                drop(client);
                let event_id = self.txn_event_id(txn).await?.ok_or_else(|| {
                    StoreError::Corrupt("a transaction ID conflicted but has no row".to_owned())
                })?;
                return Ok(PersistOutcome::DuplicateTxn { event_id });
            }
        }
        let row = queue_event(&mut pipeline, &event);
        let answers = pipeline.run(&tx).await?;
        if let (None, Some((slot, fence))) = (&event.txn, fence) {
            crate::leases::fence_holds(answers.rows(slot), fence)?;
        }
        let position = position_of(&answers, row)?;
        tx.commit().await.map_err(map_error)?;
        Ok(PersistOutcome::Persisted(position))
    }

    async fn persist_events(&self, events: Vec<PersistEvent>) -> StoreResult<Vec<StreamPosition>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let mut pipeline = Pipeline::default();
        let mut queued = Vec::with_capacity(events.len());
        let mut checked_fence = None;
        let mut txns = Vec::new();
        for event in &events {
            // One check per fence holds for the whole transaction.
            let checked = event.fence.is_some() && event.fence == checked_fence;
            if let Some(fence) = event.fence.filter(|_| !checked) {
                checked_fence = Some(fence);
                let slot = crate::leases::queue_fence_check(&mut pipeline, fence);
                queued.push(Queued::Fence(slot, fence));
            }
            if let Some(txn) = &event.txn {
                txns.push(queue_txn_id(&mut pipeline, txn, &event.event_id));
            }
            queued.push(Queued::Event(queue_event(&mut pipeline, event)));
        }
        // An error drops the transaction uncommitted: nothing is written.
        let answers = pipeline.run(&tx).await?;
        if txns.iter().any(|slot| answers.rows(*slot).is_empty()) {
            return Err(StoreError::Conflict(
                "a transaction ID in the batch was used before".to_owned(),
            ));
        }
        let mut positions = Vec::with_capacity(events.len());
        for queued in &queued {
            match queued {
                Queued::Fence(slot, fence) => {
                    crate::leases::fence_holds(answers.rows(*slot), *fence)?;
                }
                Queued::Event(row) => positions.push(position_of(&answers, *row)?),
            }
        }
        tx.commit().await.map_err(map_error)?;
        Ok(positions)
    }

    async fn event(&self, event_id: &str) -> StoreResult<Option<StoredEvent>> {
        self.query_opt(
            &format!("SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id = $1"),
            &[&event_id],
            event_from_row,
        )
        .await
    }

    async fn room(&self, room_id: &str) -> StoreResult<Option<RoomRecord>> {
        self.query_opt(
            "SELECT room_id, room_version, creator, visibility_below FROM rooms WHERE room_id = $1",
            &[&room_id],
            |row| {
                Ok(RoomRecord {
                    room_id: get(row, 0)?,
                    room_version: get(row, 1)?,
                    creator: get(row, 2)?,
                    visibility_below: get(row, 3)?,
                })
            },
        )
        .await
    }

    async fn current_state(&self, room_id: &str) -> StoreResult<Vec<StoredEvent>> {
        self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id IN
                     (SELECT event_id FROM current_state WHERE room_id = $1)
                 ORDER BY position"
            ),
            &[&room_id],
            event_from_row,
        )
        .await
    }

    async fn state_event(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Option<StoredEvent>> {
        self.query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE event_id =
                     (SELECT event_id FROM current_state
                      WHERE room_id = $1 AND event_type = $2 AND state_key = $3)"
            ),
            &[&room_id, &event_type, &state_key],
            event_from_row,
        )
        .await
    }

    async fn state_event_at(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        at: StreamPosition,
    ) -> StoreResult<Option<StoredEvent>> {
        self.query_opt(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e
                 WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND position <= $4
                 ORDER BY position DESC LIMIT 1"
            ),
            &[&room_id, &event_type, &state_key, &at.0],
            event_from_row,
        )
        .await
    }

    async fn state_at(&self, room_id: &str, at: StreamPosition) -> StoreResult<Vec<StoredEvent>> {
        self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM (
                     SELECT DISTINCT ON (event_type, state_key) *
                     FROM events
                     WHERE room_id = $1 AND state_key IS NOT NULL AND position <= $2 AND NOT outlier
                     ORDER BY event_type, state_key, position DESC
                 ) AS e ORDER BY position"
            ),
            &[&room_id, &at.0],
            event_from_row,
        )
        .await
    }

    async fn state_history(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e
                 WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND NOT e.outlier
                 ORDER BY position"
            ),
            &[&room_id, &event_type, &state_key],
            event_from_row,
        )
        .await
    }

    async fn forward_extremities(&self, room_id: &str) -> StoreResult<Vec<(String, i64)>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the locale.
        self.query(
            r#"SELECT event_id, depth FROM forward_extremities WHERE room_id = $1
               ORDER BY depth, event_id COLLATE "C""#,
            &[&room_id],
            |row| Ok((get(row, 0)?, get(row, 1)?)),
        )
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (sql, bound) = match direction {
            Direction::Backward => (
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = $1 AND NOT e.outlier
                     AND (slot, position) <= ($2, $3) AND (slot, position) > ($4, $5)
                     ORDER BY slot DESC, position DESC LIMIT $6"
                ),
                to.unwrap_or(TimelinePoint::BEFORE_ALL),
            ),
            Direction::Forward => (
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = $1 AND NOT e.outlier
                     AND (slot, position) > ($2, $3) AND (slot, position) <= ($4, $5)
                     ORDER BY slot ASC, position ASC LIMIT $6"
                ),
                to.unwrap_or(TimelinePoint::AFTER_ALL),
            ),
        };
        self.query(
            &sql,
            &[
                &room_id,
                &from.slot.0,
                &from.position.0,
                &bound.slot.0,
                &bound.position.0,
                &limit,
            ],
            event_from_row,
        )
        .await
    }

    async fn events_after(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE NOT e.outlier AND position > $1 AND position <= $2
                 ORDER BY position ASC LIMIT $3"
            ),
            &[&after.0, &upto.0, &limit],
            event_from_row,
        )
        .await
    }

    async fn max_position(&self) -> StoreResult<StreamPosition> {
        // The counter, not MAX(events.position): it only moves on commit of
        // the event that took it, and every lower one committed before.
        self.query_opt("SELECT position FROM stream_position", &[], |row| {
            get(row, 0)
        })
        .await?
        .map(StreamPosition)
        .ok_or_else(|| StoreError::Corrupt("stream_position has no row".to_owned()))
    }

    async fn memberships_of_user(&self, user_id: &str) -> StoreResult<Vec<Membership>> {
        self.query(
            "SELECT room_id, state_key, membership, event_id, position FROM current_state
             WHERE state_key = $1 AND event_type = 'm.room.member'
             AND room_id NOT IN (SELECT room_id FROM forgotten_rooms WHERE user_id = $1)
             ORDER BY position",
            &[&user_id],
            membership_from_row,
        )
        .await
    }

    async fn forget_room(&self, user_id: &str, room_id: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&user_id, &room_id],
        )
        .await
        .map(|_| ())
    }

    async fn room_forgotten(&self, user_id: &str, room_id: &str) -> StoreResult<bool> {
        let rows = self
            .query(
                "SELECT 1 FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2",
                &[&user_id, &room_id],
                |_| Ok(()),
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn room_memberships(&self, room_id: &str) -> StoreResult<Vec<Membership>> {
        self.query(
            "SELECT room_id, state_key, membership, event_id, position FROM current_state
             WHERE room_id = $1 AND event_type = 'm.room.member' ORDER BY position",
            &[&room_id],
            membership_from_row,
        )
        .await
    }

    async fn txn_event_id(&self, txn: &TxnKey) -> StoreResult<Option<String>> {
        self.query_opt(
            "SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            &[&txn.user_id, &txn.device_id, &txn.txn_id],
            |row| get(row, 0),
        )
        .await
    }
}

#[async_trait]
impl myelin_store::EventTimeStore for PostgresStore {
    async fn events_by_time(
        &self,
        room_id: &str,
        ts: i64,
        direction: Direction,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = $1 AND NOT e.outlier AND origin_server_ts >= $2
                 ORDER BY origin_server_ts ASC, position ASC LIMIT $3"
            ),
            Direction::Backward => format!(
                "SELECT {EVENT_COLUMNS} FROM events AS e WHERE room_id = $1 AND NOT e.outlier AND origin_server_ts <= $2
                 ORDER BY origin_server_ts DESC, position DESC LIMIT $3"
            ),
        };
        self.query(&sql, &[&room_id, &ts, &limit], event_from_row)
            .await
    }
}

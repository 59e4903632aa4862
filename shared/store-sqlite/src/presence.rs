//! The presence stream.

use async_trait::async_trait;
use myelin_store::{
    LapseCutoffs, LapsedPresence, MAX_LAPSED_AT_ONCE, PresenceRecord, PresenceStore,
    PresenceUpdate, StoreResult,
};
use myelin_types::StreamPosition;
use rusqlite::{OptionalExtension, params};

use crate::counters::{counter_position, take_position};
use crate::{SqliteStore, map_error};

const STREAM: &str = "presence";
const COLUMNS: &str = "user_id, state, status_msg, last_active_ts, position";
/// Whether a row's presence has lapsed (?1 idle_before, ?2 gone_before).
const LAPSED: &str = "state <> 'offline'
    AND (MAX(last_sync_ts, last_active_ts) < ?2
         OR (state = 'online' AND last_active_ts < ?1))";

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: row.get(0)?,
        state: row.get(1)?,
        status_msg: row.get(2)?,
        last_active_ts: row.get(3)?,
        position: StreamPosition(row.get(4)?),
    })
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn set_presence(&self, update: PresenceUpdate) -> StoreResult<StreamPosition> {
        self.write(move |tx| {
            let position = take_position(tx, STREAM)?;
            let keep_message = update.status_msg.is_none();
            let message = update.status_msg.flatten();
            tx.prepare_cached(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, position)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id) DO UPDATE SET
                     state = excluded.state,
                     status_msg = CASE WHEN ?6 THEN presence.status_msg ELSE excluded.status_msg END,
                     last_active_ts = excluded.last_active_ts,
                     position = excluded.position",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    update.user_id,
                    update.state,
                    message,
                    update.last_active_ts,
                    position.0,
                    keep_message
                ])
            })
            .map_err(map_error)?;
            Ok(position)
        })
        .await
    }

    async fn presence(&self, user_id: &str) -> StoreResult<Option<PresenceRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM presence WHERE user_id = ?1"
            ))
            .and_then(|mut statement| statement.query_row([user_id], record_from_row).optional())
        })
        .await
    }

    async fn presence_changes(
        &self,
        user_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<PresenceRecord>> {
        let user_ids = user_ids.to_vec();
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM presence
                 WHERE user_id = ?1 AND position > ?2 AND position <= ?3"
            ))?;
            let mut records = Vec::new();
            for user_id in &user_ids {
                if let Some(record) = statement
                    .query_row(params![user_id, since, upto.0], record_from_row)
                    .optional()?
                {
                    records.push(record);
                }
            }
            records.sort_by_key(|record| record.position);
            Ok(records)
        })
        .await
    }

    async fn note_presence_syncs(&self, user_ids: &[String], now_ms: i64) -> StoreResult<()> {
        let user_ids = user_ids.to_vec();
        self.write(move |tx| {
            let mut statement = tx
                .prepare_cached(
                    "UPDATE presence SET last_sync_ts = MAX(last_sync_ts, ?2) WHERE user_id = ?1",
                )
                .map_err(map_error)?;
            for user_id in &user_ids {
                statement
                    .execute(params![user_id, now_ms])
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn lapse_presence(&self, cutoffs: LapseCutoffs) -> StoreResult<Vec<LapsedPresence>> {
        let limit = MAX_LAPSED_AT_ONCE as i64;
        let (idle, gone) = (cutoffs.idle_before, cutoffs.gone_before);
        let any = self
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT 1 FROM presence WHERE {LAPSED} LIMIT 1"))
                    .and_then(|mut statement| statement.exists(params![idle, gone]))
            })
            .await?;
        if !any {
            return Ok(Vec::new());
        }
        self.write(move |tx| {
            let users = tx
                .prepare_cached(&format!(
                    "SELECT user_id FROM presence WHERE {LAPSED} ORDER BY user_id LIMIT ?3"
                ))
                .and_then(|mut statement| {
                    statement
                        .query_map(params![idle, gone, limit], |row| row.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(map_error)?;
            let mut lapsed = Vec::new();
            for user_id in users {
                let position = take_position(tx, STREAM)?;
                let state: String = tx
                    .prepare_cached(
                        "UPDATE presence SET
                             state = CASE WHEN MAX(last_sync_ts, last_active_ts) < ?2
                                     THEN 'offline' ELSE 'unavailable' END,
                             position = ?4
                         WHERE user_id = ?3
                         RETURNING state",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(params![idle, gone, user_id, position.0], |row| row.get(0))
                    })
                    .map_err(map_error)?;
                lapsed.push(LapsedPresence {
                    user_id,
                    state,
                    position,
                });
            }
            Ok(lapsed)
        })
        .await
    }

    async fn max_presence_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| counter_position(conn, STREAM))
            .await
            .map(StreamPosition)
    }
}

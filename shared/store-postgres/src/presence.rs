//! The presence stream.

use async_trait::async_trait;
use myelin_store::{
    LapseCutoffs, LapsedPresence, MAX_LAPSED_AT_ONCE, PresenceRecord, PresenceStore,
    PresenceUpdate, StoreResult,
};
use myelin_types::StreamPosition;
use tokio_postgres::Row;

use crate::counters::{counter_position, take_position};
use crate::{PostgresStore, get, map_error, tx_execute, tx_query_opt};

const STREAM: &str = "presence";
const COLUMNS: &str = "user_id, state, status_msg, last_active_ts, position";
/// Whether a row's presence has lapsed ($1 idle_before, $2 gone_before).
const LAPSED: &str = "state <> 'offline'
    AND (GREATEST(last_sync_ts, last_active_ts) < $2
         OR (state = 'online' AND last_active_ts < $1))";

fn record_from_row(row: &Row) -> StoreResult<PresenceRecord> {
    Ok(PresenceRecord {
        user_id: get(row, 0)?,
        state: get(row, 1)?,
        status_msg: get(row, 2)?,
        last_active_ts: get(row, 3)?,
        position: StreamPosition(get(row, 4)?),
    })
}

#[async_trait]
impl PresenceStore for PostgresStore {
    async fn set_presence(&self, update: PresenceUpdate) -> StoreResult<StreamPosition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let position = take_position(&tx, STREAM).await?;
        let keep_message = update.status_msg.is_none();
        let message = update.status_msg.flatten();
        tx_execute(
            &tx,
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, position)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET
                 state = EXCLUDED.state,
                 status_msg = CASE WHEN $6 THEN presence.status_msg ELSE EXCLUDED.status_msg END,
                 last_active_ts = EXCLUDED.last_active_ts,
                 position = EXCLUDED.position",
            &[
                &update.user_id,
                &update.state,
                &message,
                &update.last_active_ts,
                &position.0,
                &keep_message,
            ],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(position)
    }

    async fn presence(&self, user_id: &str) -> StoreResult<Option<PresenceRecord>> {
        self.query_opt(
            &format!("SELECT {COLUMNS} FROM presence WHERE user_id = $1"),
            &[&user_id],
            record_from_row,
        )
        .await
    }

    async fn presence_changes(
        &self,
        user_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<PresenceRecord>> {
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM presence
                 WHERE user_id = ANY($1) AND position > $2 AND position <= $3
                 ORDER BY position"
            ),
            &[&user_ids, &since, &upto.0],
            record_from_row,
        )
        .await
    }

    async fn note_presence_syncs(&self, user_ids: &[String], now_ms: i64) -> StoreResult<()> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "UPDATE presence SET last_sync_ts = GREATEST(last_sync_ts, $2)
                 WHERE user_id = ANY($1)",
            )
            .await
            .map_err(map_error)?;
        client
            .execute(&statement, &[&user_ids, &now_ms])
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn lapse_presence(&self, cutoffs: LapseCutoffs) -> StoreResult<Vec<LapsedPresence>> {
        let limit = MAX_LAPSED_AT_ONCE as i64;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let candidates = tx
            .query(
                &format!("SELECT user_id FROM presence WHERE {LAPSED} ORDER BY user_id LIMIT $3"),
                &[&cutoffs.idle_before, &cutoffs.gone_before, &limit],
            )
            .await
            .map_err(map_error)?;
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // Every presence writer takes the counter's lock first; a row another
        // process lapsed meanwhile no longer matches, and is skipped.
        let mut position: i64 = tx_query_opt(
            &tx,
            "SELECT position FROM stream_counters WHERE stream = $1 FOR UPDATE",
            &[&STREAM],
            |row| get(row, 0),
        )
        .await?
        .unwrap_or_default();
        let mut lapsed = Vec::new();
        for row in &candidates {
            let user_id: String = get(row, 0)?;
            let state = tx_query_opt(
                &tx,
                &format!(
                    "UPDATE presence SET
                         state = CASE WHEN GREATEST(last_sync_ts, last_active_ts) < $2
                                 THEN 'offline' ELSE 'unavailable' END,
                         position = $4
                     WHERE user_id = $3 AND {LAPSED}
                     RETURNING state"
                ),
                &[
                    &cutoffs.idle_before,
                    &cutoffs.gone_before,
                    &user_id,
                    &(position + 1),
                ],
                |row| get::<String>(row, 0),
            )
            .await?;
            if let Some(state) = state {
                position += 1;
                lapsed.push(LapsedPresence {
                    user_id,
                    state,
                    position: StreamPosition(position),
                });
            }
        }
        tx_execute(
            &tx,
            "UPDATE stream_counters SET position = $2 WHERE stream = $1",
            &[&STREAM, &position],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(lapsed)
    }

    async fn max_presence_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, STREAM).await
    }
}

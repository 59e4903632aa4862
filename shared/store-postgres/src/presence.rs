//! The presence stream.

use async_trait::async_trait;
use myelin_store::{PresenceRecord, PresenceStore, PresenceUpdate, StoreResult};
use myelin_types::StreamPosition;
use tokio_postgres::Row;

use crate::counters::{counter_position, take_position};
use crate::{PostgresStore, get, map_error, tx_execute};

const STREAM: &str = "presence";
const COLUMNS: &str = "user_id, state, status_msg, last_active_ts, position";

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

    async fn max_presence_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, STREAM).await
    }
}

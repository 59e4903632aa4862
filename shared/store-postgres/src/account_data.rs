//! The account-data stream.

use async_trait::async_trait;
use myelin_store::{AccountDataEntry, AccountDataStore, StoreResult};
use myelin_types::StreamPosition;
use tokio_postgres::Row;

use crate::counters::{counter_position, take_position};
use crate::{PostgresStore, get, map_error, tx_execute};

const STREAM: &str = "account_data";

fn entry_from_row(row: &Row) -> StoreResult<AccountDataEntry> {
    let room_id: String = get(row, 0)?;
    Ok(AccountDataEntry {
        room_id: (!room_id.is_empty()).then_some(room_id),
        data_type: get(row, 1)?,
        content: get(row, 2)?,
        position: StreamPosition(get(row, 3)?),
    })
}

#[async_trait]
impl AccountDataStore for PostgresStore {
    async fn set_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
        content_json: &str,
    ) -> StoreResult<StreamPosition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let position = take_position(&tx, STREAM).await?;
        tx_execute(
            &tx,
            "INSERT INTO account_data (user_id, room_id, data_type, content, position)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, room_id, data_type)
             DO UPDATE SET content = EXCLUDED.content, position = EXCLUDED.position",
            &[
                &user_id,
                &room_id.unwrap_or_default(),
                &data_type,
                &content_json,
                &position.0,
            ],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(position)
    }

    async fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
    ) -> StoreResult<Option<String>> {
        self.query_opt(
            "SELECT content FROM account_data
             WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
            &[&user_id, &room_id.unwrap_or_default(), &data_type],
            |row| get(row, 0),
        )
        .await
    }

    async fn account_data_changes(
        &self,
        user_id: &str,
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<AccountDataEntry>> {
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.query(
            "SELECT room_id, data_type, content, position FROM account_data
             WHERE user_id = $1 AND position > $2 AND position <= $3
             ORDER BY position",
            &[&user_id, &since, &upto.0],
            entry_from_row,
        )
        .await
    }

    async fn max_account_data_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, STREAM).await
    }
}

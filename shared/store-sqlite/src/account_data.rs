//! The account-data stream.

use async_trait::async_trait;
use myelin_store::{AccountDataEntry, AccountDataStore, StoreResult};
use myelin_types::StreamPosition;
use rusqlite::{OptionalExtension, params};

use crate::counters::{counter_position, take_position};
use crate::{SqliteStore, map_error};

const STREAM: &str = "account_data";

#[async_trait]
impl AccountDataStore for SqliteStore {
    async fn set_account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
        content_json: &str,
    ) -> StoreResult<StreamPosition> {
        let (user_id, room_id, data_type, content) = (
            user_id.to_owned(),
            room_id.unwrap_or_default().to_owned(),
            data_type.to_owned(),
            content_json.to_owned(),
        );
        self.write(move |tx| {
            let position = take_position(tx, STREAM)?;
            tx.prepare_cached(
                "INSERT INTO account_data (user_id, room_id, data_type, content, position)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, room_id, data_type)
                 DO UPDATE SET content = excluded.content, position = excluded.position",
            )
            .and_then(|mut statement| {
                statement.execute(params![user_id, room_id, data_type, content, position.0])
            })
            .map_err(map_error)?;
            Ok(position)
        })
        .await
    }

    async fn account_data(
        &self,
        user_id: &str,
        room_id: Option<&str>,
        data_type: &str,
    ) -> StoreResult<Option<String>> {
        let (user_id, room_id, data_type) = (
            user_id.to_owned(),
            room_id.unwrap_or_default().to_owned(),
            data_type.to_owned(),
        );
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT content FROM account_data
                 WHERE user_id = ?1 AND room_id = ?2 AND data_type = ?3",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([user_id, room_id, data_type], |row| row.get(0))
                    .optional()
            })
        })
        .await
    }

    async fn account_data_changes(
        &self,
        user_id: &str,
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<AccountDataEntry>> {
        let user_id = user_id.to_owned();
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT room_id, data_type, content, position FROM account_data
                 WHERE user_id = ?1 AND position > ?2 AND position <= ?3
                 ORDER BY position",
            )?;
            let rows = statement.query_map(params![user_id, since, upto.0], |row| {
                let room_id: String = row.get(0)?;
                Ok(AccountDataEntry {
                    room_id: (!room_id.is_empty()).then_some(room_id),
                    data_type: row.get(1)?,
                    content: row.get(2)?,
                    position: StreamPosition(row.get(3)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn max_account_data_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| counter_position(conn, STREAM))
            .await
            .map(StreamPosition)
    }
}

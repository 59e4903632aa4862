//! The to-device stream.

use async_trait::async_trait;
use myelin_store::{StoreResult, ToDeviceAck, ToDeviceMessage, ToDeviceSend, ToDeviceStore};
use myelin_types::StreamPosition;
use rusqlite::params;

use crate::counters::{counter_position, take_position};
use crate::{SqliteStore, map_error};

const STREAM: &str = "to_device";
/// How long a transaction ID is remembered (ms).
const TXN_KEPT_MS: i64 = 24 * 60 * 60 * 1000;

#[async_trait]
impl ToDeviceStore for SqliteStore {
    async fn send_to_device(&self, send: ToDeviceSend) -> StoreResult<Option<StreamPosition>> {
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM to_device_txns WHERE user_id = ?1 AND device_id = ?2 AND ts < ?3",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    send.sender,
                    send.sender_device,
                    send.ts - TXN_KEPT_MS
                ])
            })
            .map_err(map_error)?;
            let new = tx
                .prepare_cached(
                    "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .and_then(|mut statement| {
                    statement.execute(params![send.sender, send.sender_device, send.txn_id, send.ts])
                })
                .map_err(map_error)?;
            if new == 0 {
                return Ok(None);
            }
            let mut last = None;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO to_device_inbox (user_id, device_id, position, sender, event_type, content)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(map_error)?;
            for message in &send.messages {
                let position = take_position(tx, STREAM)?;
                insert
                    .execute(params![
                        message.user_id,
                        message.device_id,
                        position.0,
                        send.sender,
                        send.event_type,
                        message.content
                    ])
                    .map_err(map_error)?;
                last = Some(position);
            }
            Ok(last)
        })
        .await
    }

    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<ToDeviceMessage>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT position, sender, event_type, content FROM to_device_inbox
                 WHERE user_id = ?1 AND device_id = ?2 AND position > ?3 AND position <= ?4
                 ORDER BY position LIMIT ?5",
            )?
            .query_map(params![user_id, device_id, after.0, upto.0, limit], |row| {
                Ok(ToDeviceMessage {
                    position: StreamPosition(row.get(0)?),
                    sender: row.get(1)?,
                    event_type: row.get(2)?,
                    content: row.get(3)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn acknowledge_to_device(&self, acks: &[ToDeviceAck]) -> StoreResult<()> {
        let acks = acks.to_vec();
        self.write(move |tx| {
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM to_device_inbox
                     WHERE user_id = ?1 AND device_id = ?2 AND position <= ?3",
                )
                .map_err(map_error)?;
            for ack in &acks {
                delete
                    .execute(params![ack.user_id, ack.device_id, ack.upto.0])
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn max_to_device_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| counter_position(conn, STREAM))
            .await
            .map(StreamPosition)
    }
}

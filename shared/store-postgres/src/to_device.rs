//! The to-device stream.

use async_trait::async_trait;
use myelin_store::{StoreResult, ToDeviceAck, ToDeviceMessage, ToDeviceSend, ToDeviceStore};
use myelin_types::StreamPosition;

use crate::counters::{counter_position, take_positions};
use crate::{PostgresStore, get, map_error, tx_execute};

const STREAM: &str = "to_device";
/// How long a transaction ID is remembered (ms).
const TXN_KEPT_MS: i64 = 24 * 60 * 60 * 1000;

#[async_trait]
impl ToDeviceStore for PostgresStore {
    async fn send_to_device(&self, send: ToDeviceSend) -> StoreResult<Option<StreamPosition>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx_execute(
            &tx,
            "DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2 AND ts < $3",
            &[&send.sender, &send.sender_device, &(send.ts - TXN_KEPT_MS)],
        )
        .await?;
        let new = tx_execute(
            &tx,
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, ts) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&send.sender, &send.sender_device, &send.txn_id, &send.ts],
        )
        .await?;
        if new == 0 || send.messages.is_empty() {
            tx.commit().await.map_err(map_error)?;
            return Ok(None);
        }
        let last = take_positions(&tx, STREAM, send.messages.len()).await?;
        let first = last.0 - send.messages.len() as i64 + 1;
        for (offset, message) in send.messages.iter().enumerate() {
            tx_execute(
                &tx,
                "INSERT INTO to_device_inbox (user_id, device_id, position, sender, event_type, content)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &message.user_id,
                    &message.device_id,
                    &(first + offset as i64),
                    &send.sender,
                    &send.event_type,
                    &message.content,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(Some(last))
    }

    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<ToDeviceMessage>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT position, sender, event_type, content FROM to_device_inbox
             WHERE user_id = $1 AND device_id = $2 AND position > $3 AND position <= $4
             ORDER BY position LIMIT $5",
            &[&user_id, &device_id, &after.0, &upto.0, &limit],
            |row| {
                Ok(ToDeviceMessage {
                    position: StreamPosition(get(row, 0)?),
                    sender: get(row, 1)?,
                    event_type: get(row, 2)?,
                    content: get(row, 3)?,
                })
            },
        )
        .await
    }

    async fn acknowledge_to_device(&self, acks: &[ToDeviceAck]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        for ack in acks {
            tx_execute(
                &tx,
                "DELETE FROM to_device_inbox
                 WHERE user_id = $1 AND device_id = $2 AND position <= $3",
                &[&ack.user_id, &ack.device_id, &ack.upto.0],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn max_to_device_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, STREAM).await
    }
}

//! The receipts stream.

use async_trait::async_trait;
use myelin_store::{NewReceipt, Receipt, ReceiptStore, StoreResult};
use myelin_types::StreamPosition;
use tokio_postgres::Row;

use crate::counters::{counter_position, take_position};
use crate::{PostgresStore, get, map_error, tx_execute};

const STREAM: &str = "receipts";

fn receipt_from_row(row: &Row) -> StoreResult<Receipt> {
    let thread_id: String = get(row, 3)?;
    Ok(Receipt {
        room_id: get(row, 0)?,
        receipt_type: get(row, 1)?,
        user_id: get(row, 2)?,
        thread_id: (!thread_id.is_empty()).then_some(thread_id),
        event_id: get(row, 4)?,
        ts: get(row, 5)?,
        position: StreamPosition(get(row, 6)?),
    })
}

#[async_trait]
impl ReceiptStore for PostgresStore {
    async fn set_receipt(&self, receipt: NewReceipt) -> StoreResult<StreamPosition> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let position = take_position(&tx, STREAM).await?;
        tx_execute(
            &tx,
            "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, position)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (room_id, receipt_type, user_id, thread_id)
             DO UPDATE SET event_id = EXCLUDED.event_id, ts = EXCLUDED.ts,
                           position = EXCLUDED.position",
            &[
                &receipt.room_id,
                &receipt.receipt_type,
                &receipt.user_id,
                &receipt.thread_id.unwrap_or_default(),
                &receipt.event_id,
                &receipt.ts,
                &position.0,
            ],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(position)
    }

    async fn receipt_changes(
        &self,
        room_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<Receipt>> {
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.query(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, position
             FROM receipts
             WHERE room_id = ANY($1) AND position > $2 AND position <= $3
             ORDER BY position",
            &[&room_ids, &since, &upto.0],
            receipt_from_row,
        )
        .await
    }

    async fn receipts_between(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<Receipt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, position
             FROM receipts WHERE position > $1 AND position <= $2
             ORDER BY position LIMIT $3",
            &[&after.0, &upto.0, &limit],
            receipt_from_row,
        )
        .await
    }

    async fn max_receipt_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, STREAM).await
    }
}

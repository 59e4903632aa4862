//! The receipts stream.

use async_trait::async_trait;
use myelin_store::{NewReceipt, Receipt, ReceiptStore, StoreResult};
use myelin_types::StreamPosition;
use rusqlite::params;

use crate::counters::{counter_position, take_position};
use crate::{SqliteStore, map_error};

const STREAM: &str = "receipts";

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn set_receipt(&self, receipt: NewReceipt) -> StoreResult<StreamPosition> {
        self.write(move |tx| {
            let position = take_position(tx, STREAM)?;
            tx.prepare_cached(
                "INSERT INTO receipts
                   (room_id, receipt_type, user_id, thread_id, event_id, ts, position)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (room_id, receipt_type, user_id, thread_id)
                 DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts,
                               position = excluded.position",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    receipt.room_id,
                    receipt.receipt_type,
                    receipt.user_id,
                    receipt.thread_id.unwrap_or_default(),
                    receipt.event_id,
                    receipt.ts,
                    position.0
                ])
            })
            .map_err(map_error)?;
            Ok(position)
        })
        .await
    }

    async fn receipt_changes(
        &self,
        room_ids: &[String],
        since: Option<StreamPosition>,
        upto: StreamPosition,
    ) -> StoreResult<Vec<Receipt>> {
        let room_ids = room_ids.to_vec();
        let since = since.unwrap_or(StreamPosition(i64::MIN)).0;
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, position
                 FROM receipts
                 WHERE room_id = ?1 AND position > ?2 AND position <= ?3",
            )?;
            let mut receipts = Vec::new();
            for room_id in &room_ids {
                let rows =
                    statement.query_map(params![room_id, since, upto.0], receipt_from_row)?;
                for receipt in rows {
                    receipts.push(receipt?);
                }
            }
            receipts.sort_by_key(|receipt| receipt.position);
            Ok(receipts)
        })
        .await
    }

    async fn receipts_between(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<Receipt>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, position
                 FROM receipts WHERE position > ?1 AND position <= ?2
                 ORDER BY position LIMIT ?3",
            )?
            .query_map(params![after.0, upto.0, limit], receipt_from_row)?
            .collect()
        })
        .await
    }

    async fn max_receipt_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| counter_position(conn, STREAM))
            .await
            .map(StreamPosition)
    }
}

fn receipt_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Receipt> {
    let thread_id: String = row.get(3)?;
    Ok(Receipt {
        room_id: row.get(0)?,
        receipt_type: row.get(1)?,
        user_id: row.get(2)?,
        thread_id: (!thread_id.is_empty()).then_some(thread_id),
        event_id: row.get(4)?,
        ts: row.get(5)?,
        position: StreamPosition(row.get(6)?),
    })
}

//! Outbound federation queues.

use async_trait::async_trait;
use myelin_store::{
    ANSWERS_KEPT_MS, AnsweredTransaction, DestinationRetry, EduStream, Fence, InboundTurn,
    OutboxBatch, OutboxEdu, OutboxEntry, OutboxStore, QueuedEdu, QueuedPdu, StoreResult,
};
use myelin_types::StreamPosition;
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

fn entries(
    conn: &rusqlite::Connection,
    destination: &str,
    upto: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxEntry>> {
    conn.prepare_cached(
        "SELECT seq, event_id FROM federation_outbox
         WHERE destination = ?1 AND (?2 IS NULL OR seq <= ?2) ORDER BY seq LIMIT ?3",
    )?
    .query_map(params![destination, upto, limit as i64], |row| {
        Ok(OutboxEntry {
            seq: row.get(0)?,
            event_id: row.get(1)?,
        })
    })?
    .collect()
}

/// A destination's EDUs marked for `txn_id`, or those not marked yet.
fn edus(
    conn: &rusqlite::Connection,
    destination: &str,
    txn_id: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<OutboxEdu>> {
    conn.prepare_cached(
        "SELECT seq, edu_json FROM federation_edu_outbox
         WHERE destination = ?1 AND txn_id IS ?2 ORDER BY seq LIMIT ?3",
    )?
    .query_map(params![destination, txn_id, limit as i64], |row| {
        Ok(OutboxEdu {
            seq: row.get(0)?,
            edu_json: row.get(1)?,
        })
    })?
    .collect()
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn outbox_cursor(&self, partition: u16) -> StoreResult<StreamPosition> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT position FROM federation_cursors WHERE partition = ?1")?
                .query_row([i64::from(partition)], |row| row.get(0))
                .optional()
                .map(|position| StreamPosition(position.unwrap_or(0)))
        })
        .await
    }

    async fn enqueue_pdus(
        &self,
        partition: u16,
        fence: Fence,
        upto: StreamPosition,
        pdus: Vec<QueuedPdu>,
    ) -> StoreResult<()> {
        self.write(move |tx| {
            crate::leases::check_fence(tx, fence)?;
            for pdu in &pdus {
                tx.prepare_cached(
                    "INSERT INTO federation_outbox (destination, partition, event_id) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut statement| {
                    statement.execute(params![pdu.destination, i64::from(partition), pdu.event_id])
                })
                .map_err(map_error)?;
            }
            tx.prepare_cached(
                "INSERT INTO federation_cursors (partition, position) VALUES (?1, ?2)
                 ON CONFLICT (partition) DO UPDATE SET position = MAX(position, excluded.position)",
            )
            .and_then(|mut statement| statement.execute(params![i64::from(partition), upto.0]))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn queued_destinations(&self, partitions: &[u16]) -> StoreResult<Vec<String>> {
        let partitions = partitions.to_vec();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT destination FROM federation_outbox WHERE partition = ?1
                 UNION SELECT destination FROM federation_edu_outbox WHERE partition = ?1",
            )?;
            let mut found = Vec::new();
            for partition in partitions {
                for destination in statement.query_map([i64::from(partition)], |row| row.get(0))? {
                    found.push(destination?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn enqueue_edus(&self, edus: Vec<QueuedEdu>) -> StoreResult<()> {
        self.write(move |tx| {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO federation_edu_outbox (destination, partition, edu_json) VALUES (?1, ?2, ?3)",
                )
                .map_err(map_error)?;
            for edu in &edus {
                insert
                    .execute(params![edu.destination, i64::from(edu.partition), edu.edu_json])
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn outbox_batch(
        &self,
        destination: &str,
        pdu_limit: usize,
        edu_limit: usize,
    ) -> StoreResult<OutboxBatch> {
        let destination = destination.to_owned();
        self.read(move |conn| {
            let pending: Option<(Option<String>, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT txn_id, txn_upto FROM federation_destinations WHERE destination = ?1",
                )?
                .query_row([&destination], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match pending {
                Some((Some(txn_id), pdu_upto)) => Ok(OutboxBatch {
                    entries: match pdu_upto {
                        Some(upto) => entries(conn, &destination, Some(upto), usize::MAX >> 1)?,
                        None => Vec::new(),
                    },
                    edus: edus(conn, &destination, Some(&txn_id), usize::MAX >> 1)?,
                    txn_id: Some(txn_id),
                }),
                _ => Ok(OutboxBatch {
                    txn_id: None,
                    entries: entries(conn, &destination, None, pdu_limit)?,
                    edus: edus(conn, &destination, None, edu_limit)?,
                }),
            }
        })
        .await
    }

    async fn begin_transaction(
        &self,
        destination: &str,
        txn_id: &str,
        pdu_upto: Option<i64>,
        edu_seqs: &[i64],
    ) -> StoreResult<()> {
        let (destination, txn_id) = (destination.to_owned(), txn_id.to_owned());
        let edu_seqs = edu_seqs.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO federation_destinations (destination, txn_id, txn_upto)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (destination) DO UPDATE SET txn_id = excluded.txn_id,
                     txn_upto = excluded.txn_upto",
            )
            .and_then(|mut statement| statement.execute(params![destination, txn_id, pdu_upto]))
            .map_err(map_error)?;
            let mut mark = tx
                .prepare_cached(
                    "UPDATE federation_edu_outbox SET txn_id = ?2 WHERE seq = ?1 AND txn_id IS NULL",
                )
                .map_err(map_error)?;
            for seq in &edu_seqs {
                mark.execute(params![seq, txn_id]).map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn end_transaction(&self, destination: &str, txn_id: &str) -> StoreResult<()> {
        let (destination, txn_id) = (destination.to_owned(), txn_id.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM federation_outbox WHERE destination = ?1 AND seq <=
                     (SELECT txn_upto FROM federation_destinations
                      WHERE destination = ?1 AND txn_id = ?2)",
            )
            .and_then(|mut statement| statement.execute([&destination, &txn_id]))
            .map_err(map_error)?;
            tx.prepare_cached(
                "DELETE FROM federation_edu_outbox WHERE destination = ?1 AND txn_id = ?2",
            )
            .and_then(|mut statement| statement.execute([&destination, &txn_id]))
            .map_err(map_error)?;
            tx.prepare_cached(
                "UPDATE federation_destinations SET txn_id = NULL, txn_upto = NULL,
                     failures = 0, retry_at = NULL
                 WHERE destination = ?1 AND txn_id = ?2",
            )
            .and_then(|mut statement| statement.execute([&destination, &txn_id]))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn set_destination_retry(
        &self,
        destination: &str,
        failures: i64,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        let destination = destination.to_owned();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO federation_destinations (destination, failures, retry_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_at = excluded.retry_at",
            )
            .and_then(|mut statement| statement.execute(params![destination, failures, retry_at]))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn destination_retry(&self, destination: &str) -> StoreResult<Option<DestinationRetry>> {
        let destination = destination.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT destination, failures, retry_at FROM federation_destinations WHERE destination = ?1",
            )?
            .query_row([&destination], |row| {
                Ok(DestinationRetry {
                    destination: row.get(0)?,
                    failures: row.get(1)?,
                    retry_at: row.get(2)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn edu_cursor(&self, partition: u16, stream: EduStream) -> StoreResult<StreamPosition> {
        let column = stream.cursor_column();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {column} FROM federation_cursors WHERE partition = ?1"
            ))?
            .query_row([i64::from(partition)], |row| row.get(0))
            .optional()
            .map(|position| StreamPosition(position.unwrap_or(0)))
        })
        .await
    }

    async fn advance_edu_cursor(
        &self,
        partition: u16,
        fence: Fence,
        stream: EduStream,
        upto: StreamPosition,
    ) -> StoreResult<()> {
        let column = stream.cursor_column();
        self.write(move |tx| {
            crate::leases::check_fence(tx, fence)?;
            tx.prepare_cached(&format!(
                "UPDATE federation_cursors SET {column} = MAX({column}, ?2) WHERE partition = ?1"
            ))
            .and_then(|mut statement| statement.execute(params![i64::from(partition), upto.0]))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn claim_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        txn_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<InboundTurn> {
        let (origin, holder, txn_id) = (origin.to_owned(), holder.to_owned(), txn_id.to_owned());
        self.write(move |tx| {
            let taken = tx
                .prepare_cached(
                    "INSERT INTO inbound_turns (origin, holder, expires_at) VALUES (?1, ?2, ?4)
                     ON CONFLICT (origin) DO UPDATE SET holder = excluded.holder,
                         expires_at = excluded.expires_at
                     WHERE inbound_turns.expires_at <= ?3 OR inbound_turns.holder = excluded.holder",
                )
                .and_then(|mut statement| {
                    statement.execute(params![origin, holder, now, expires_at])
                })
                .map_err(map_error)?;
            if taken != 1 {
                return Ok(InboundTurn::Busy);
            }
            let answer = tx
                .prepare_cached(
                    "SELECT answer FROM inbound_answers
                     WHERE origin = ?1 AND txn_id = ?2 AND answered_at >= ?3",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(
                            params![origin, txn_id, now.saturating_sub(ANSWERS_KEPT_MS)],
                            |row| row.get(0),
                        )
                        .optional()
                })
                .map_err(map_error)?;
            Ok(InboundTurn::Taken(answer))
        })
        .await
    }

    async fn release_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        answered: Option<&AnsweredTransaction>,
    ) -> StoreResult<()> {
        let (origin, holder) = (origin.to_owned(), holder.to_owned());
        let answered = answered.cloned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM inbound_turns WHERE origin = ?1 AND holder = ?2")
                .and_then(|mut statement| statement.execute([&origin, &holder]))
                .map_err(map_error)?;
            let Some(answered) = answered else {
                return Ok(());
            };
            let forget_before = answered.answered_at.saturating_sub(ANSWERS_KEPT_MS);
            tx.prepare_cached("DELETE FROM inbound_answers WHERE origin = ?1 AND answered_at < ?2")
                .and_then(|mut statement| statement.execute(params![origin, forget_before]))
                .map_err(map_error)?;
            tx.prepare_cached(
                "INSERT INTO inbound_answers (origin, txn_id, answer, answered_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (origin, txn_id) DO UPDATE
                     SET answer = excluded.answer, answered_at = excluded.answered_at",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    origin,
                    answered.txn_id,
                    answered.answer,
                    answered.answered_at
                ])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }
}

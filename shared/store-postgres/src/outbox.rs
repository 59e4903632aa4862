//! Outbound federation queues.

use async_trait::async_trait;
use myelin_store::{
    ANSWERS_KEPT_MS, AnsweredTransaction, DestinationRetry, EduStream, Fence, InboundTurn,
    OutboxBatch, OutboxEdu, OutboxEntry, OutboxStore, QueuedEdu, QueuedPdu, StoreResult,
};
use myelin_types::StreamPosition;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::{PostgresStore, get, map_error, tx_execute};

fn entry_from_row(row: &Row) -> StoreResult<OutboxEntry> {
    Ok(OutboxEntry {
        seq: get(row, 0)?,
        event_id: get(row, 1)?,
    })
}

#[async_trait]
impl OutboxStore for PostgresStore {
    async fn outbox_cursor(&self, partition: u16) -> StoreResult<StreamPosition> {
        let position: Option<i64> = self
            .query_opt(
                "SELECT position FROM federation_cursors WHERE partition = $1",
                &[&i64::from(partition)],
                |row| get(row, 0),
            )
            .await?;
        Ok(StreamPosition(position.unwrap_or(0)))
    }

    async fn enqueue_pdus(
        &self,
        partition: u16,
        fence: Fence,
        upto: StreamPosition,
        pdus: Vec<QueuedPdu>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let destinations: Vec<&str> = pdus.iter().map(|pdu| pdu.destination.as_str()).collect();
        let events: Vec<&str> = pdus.iter().map(|pdu| pdu.event_id.as_str()).collect();
        let partition = i64::from(partition);
        let queue_params: [&(dyn ToSql + Sync); 3] = [&partition, &destinations, &events];
        let cursor_params: [&(dyn ToSql + Sync); 2] = [&partition, &upto.0];
        // Sent together: the connection runs them in order, and a refused
        // fence drops the transaction with whatever followed it.
        tokio::try_join!(
            crate::leases::check_fence(&tx, fence),
            // WITH ORDINALITY keeps the queue in the order given.
            tx_execute(
                &tx,
                "INSERT INTO federation_outbox (destination, partition, event_id)
                 SELECT destination, $1, event_id
                 FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS q (destination, event_id, n)
                 ORDER BY n",
                &queue_params,
            ),
            tx_execute(
                &tx,
                "INSERT INTO federation_cursors (partition, position) VALUES ($1, $2)
                 ON CONFLICT (partition) DO UPDATE
                     SET position = GREATEST(federation_cursors.position, excluded.position)",
                &cursor_params,
            ),
        )?;
        tx.commit().await.map_err(map_error)
    }

    async fn queued_destinations(&self, partitions: &[u16]) -> StoreResult<Vec<String>> {
        let partitions: Vec<i64> = partitions.iter().map(|p| i64::from(*p)).collect();
        self.query(
            "SELECT destination FROM federation_outbox WHERE partition = ANY($1)
             UNION SELECT destination FROM federation_edu_outbox WHERE partition = ANY($1)",
            &[&partitions],
            |row| get(row, 0),
        )
        .await
    }

    async fn enqueue_edus(&self, edus: Vec<QueuedEdu>) -> StoreResult<()> {
        let destinations: Vec<&str> = edus.iter().map(|edu| edu.destination.as_str()).collect();
        let partitions: Vec<i64> = edus.iter().map(|edu| i64::from(edu.partition)).collect();
        let jsons: Vec<&str> = edus.iter().map(|edu| edu.edu_json.as_str()).collect();
        self.execute(
            "INSERT INTO federation_edu_outbox (destination, partition, edu_json)
             SELECT destination, partition, edu_json
             FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY
                 AS q (destination, partition, edu_json, n)
             ORDER BY n",
            &[&destinations, &partitions, &jsons],
        )
        .await
        .map(|_| ())
    }

    async fn outbox_batch(
        &self,
        destination: &str,
        pdu_limit: usize,
        edu_limit: usize,
    ) -> StoreResult<OutboxBatch> {
        let pending: Option<(Option<String>, Option<i64>)> = self
            .query_opt(
                "SELECT txn_id, txn_upto FROM federation_destinations WHERE destination = $1",
                &[&destination],
                |row| Ok((get(row, 0)?, get(row, 1)?)),
            )
            .await?;
        let edu_from_row = |row: &tokio_postgres::Row| -> StoreResult<OutboxEdu> {
            Ok(OutboxEdu {
                seq: get(row, 0)?,
                edu_json: get(row, 1)?,
            })
        };
        if let Some((Some(txn_id), pdu_upto)) = pending {
            let entries = match pdu_upto {
                Some(upto) => {
                    self.query(
                        "SELECT seq, event_id FROM federation_outbox
                         WHERE destination = $1 AND seq <= $2 ORDER BY seq",
                        &[&destination, &upto],
                        entry_from_row,
                    )
                    .await?
                }
                None => Vec::new(),
            };
            let edus = self
                .query(
                    "SELECT seq, edu_json FROM federation_edu_outbox
                     WHERE destination = $1 AND txn_id = $2 ORDER BY seq",
                    &[&destination, &txn_id],
                    edu_from_row,
                )
                .await?;
            return Ok(OutboxBatch {
                txn_id: Some(txn_id),
                entries,
                edus,
            });
        }
        let pdu_params: [&(dyn ToSql + Sync); 2] = [&destination, &(pdu_limit as i64)];
        let edu_limit = edu_limit as i64;
        let edu_params: [&(dyn ToSql + Sync); 2] = [&destination, &edu_limit];
        let (entries, edus) = tokio::try_join!(
            self.query(
                "SELECT seq, event_id FROM federation_outbox
                 WHERE destination = $1 ORDER BY seq LIMIT $2",
                &pdu_params,
                entry_from_row,
            ),
            self.query(
                "SELECT seq, edu_json FROM federation_edu_outbox
                 WHERE destination = $1 AND txn_id IS NULL ORDER BY seq LIMIT $2",
                &edu_params,
                edu_from_row,
            ),
        )?;
        Ok(OutboxBatch {
            txn_id: None,
            entries,
            edus,
        })
    }

    async fn begin_transaction(
        &self,
        destination: &str,
        txn_id: &str,
        pdu_upto: Option<i64>,
        edu_seqs: &[i64],
    ) -> StoreResult<()> {
        // One statement, so one round trip and all or nothing. The EDUs
        // taken are the very rows the transaction carries: others may be
        // queued at once with lower sequence numbers that commit later.
        self.execute(
            "WITH taken AS (
                 UPDATE federation_edu_outbox SET txn_id = $2
                 WHERE seq = ANY($4) AND txn_id IS NULL
             )
             INSERT INTO federation_destinations (destination, txn_id, txn_upto)
             VALUES ($1, $2, $3)
             ON CONFLICT (destination) DO UPDATE
                 SET txn_id = excluded.txn_id, txn_upto = excluded.txn_upto",
            &[&destination, &txn_id, &pdu_upto, &edu_seqs],
        )
        .await
        .map(|_| ())
    }

    async fn end_transaction(&self, destination: &str, txn_id: &str) -> StoreResult<()> {
        // One statement: every part reads the destination's row as it was,
        // so the PDUs the transaction carried are known as it ends.
        self.execute(
            "WITH sent AS (
                 SELECT txn_upto FROM federation_destinations
                 WHERE destination = $1 AND txn_id = $2
             ), pdus AS (
                 DELETE FROM federation_outbox
                 WHERE destination = $1 AND seq <= (SELECT txn_upto FROM sent)
             ), edus AS (
                 DELETE FROM federation_edu_outbox WHERE destination = $1 AND txn_id = $2
             )
             UPDATE federation_destinations SET txn_id = NULL, txn_upto = NULL,
                 failures = 0, retry_at = NULL
             WHERE destination = $1 AND txn_id = $2",
            &[&destination, &txn_id],
        )
        .await
        .map(|_| ())
    }

    async fn set_destination_retry(
        &self,
        destination: &str,
        failures: i64,
        retry_at: Option<i64>,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO federation_destinations (destination, failures, retry_at) VALUES ($1, $2, $3)
             ON CONFLICT (destination) DO UPDATE
                 SET failures = excluded.failures, retry_at = excluded.retry_at",
            &[&destination, &failures, &retry_at],
        )
        .await
        .map(|_| ())
    }

    async fn destination_retry(&self, destination: &str) -> StoreResult<Option<DestinationRetry>> {
        self.query_opt(
            "SELECT destination, failures, retry_at FROM federation_destinations
             WHERE destination = $1",
            &[&destination],
            |row| {
                Ok(DestinationRetry {
                    destination: get(row, 0)?,
                    failures: get(row, 1)?,
                    retry_at: get(row, 2)?,
                })
            },
        )
        .await
    }

    async fn edu_cursor(&self, partition: u16, stream: EduStream) -> StoreResult<StreamPosition> {
        let column = stream.cursor_column();
        let position: Option<i64> = self
            .query_opt(
                &format!("SELECT {column} FROM federation_cursors WHERE partition = $1"),
                &[&i64::from(partition)],
                |row| get(row, 0),
            )
            .await?;
        Ok(StreamPosition(position.unwrap_or(0)))
    }

    async fn advance_edu_cursor(
        &self,
        partition: u16,
        fence: Fence,
        stream: EduStream,
        upto: StreamPosition,
    ) -> StoreResult<()> {
        let column = stream.cursor_column();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        crate::leases::check_fence(&tx, fence).await?;
        tx_execute(
            &tx,
            &format!(
                "UPDATE federation_cursors
                 SET {column} = GREATEST({column}, $2) WHERE partition = $1"
            ),
            &[&i64::from(partition), &upto.0],
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn claim_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        txn_id: &str,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<InboundTurn> {
        let taken = self
            .execute(
                "INSERT INTO inbound_turns (origin, holder, expires_at) VALUES ($1, $2, $4)
                 ON CONFLICT (origin) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE inbound_turns.expires_at <= $3 OR inbound_turns.holder = EXCLUDED.holder",
                &[&origin, &holder, &now, &expires_at],
            )
            .await?;
        if taken != 1 {
            return Ok(InboundTurn::Busy);
        }
        // Read after the turn is taken, in a statement of its own: one
        // snapshot with the claim could miss the answer the holder before
        // committed while the claim waited for its row.
        let answer = self
            .query_opt(
                "SELECT answer FROM inbound_answers
                 WHERE origin = $1 AND txn_id = $2 AND answered_at >= $3",
                &[&origin, &txn_id, &now.saturating_sub(ANSWERS_KEPT_MS)],
                |row| get(row, 0),
            )
            .await?;
        Ok(InboundTurn::Taken(answer))
    }

    async fn release_inbound_turn(
        &self,
        origin: &str,
        holder: &str,
        answered: Option<&AnsweredTransaction>,
    ) -> StoreResult<()> {
        let Some(answered) = answered else {
            self.execute(
                "DELETE FROM inbound_turns WHERE origin = $1 AND holder = $2",
                &[&origin, &holder],
            )
            .await?;
            return Ok(());
        };
        let forget_before = answered.answered_at.saturating_sub(ANSWERS_KEPT_MS);
        self.execute(
            "WITH released AS (
                 DELETE FROM inbound_turns WHERE origin = $1 AND holder = $2),
             forgotten AS (
                 DELETE FROM inbound_answers
                 WHERE origin = $1 AND answered_at < $6 AND txn_id <> $3)
             INSERT INTO inbound_answers (origin, txn_id, answer, answered_at)
             VALUES ($1, $3, $4, $5)
             ON CONFLICT (origin, txn_id) DO UPDATE
                 SET answer = excluded.answer, answered_at = excluded.answered_at",
            &[
                &origin,
                &holder,
                &answered.txn_id,
                &answered.answer,
                &answered.answered_at,
                &forget_before,
            ],
        )
        .await?;
        Ok(())
    }
}

//! Other servers' signing keys.

use async_trait::async_trait;
use myelin_store::{ServerKeyDocument, ServerKeyStore, ServerVerifyKey, StoreResult};
use tokio_postgres::Row;

use crate::{PostgresStore, get, map_error, tx_execute};

fn key_from_row(row: &Row) -> StoreResult<ServerVerifyKey> {
    Ok(ServerVerifyKey {
        key_id: get(row, 0)?,
        public_key: get(row, 1)?,
        valid_until_ts: get(row, 2)?,
        expired_ts: get(row, 3)?,
    })
}

const KEYS_OF_SERVER: &str = "SELECT key_id, public_key, valid_until_ts, expired_ts
     FROM server_verify_keys WHERE server_name = $1 ORDER BY key_id";

#[async_trait]
impl ServerKeyStore for PostgresStore {
    async fn store_server_keys(&self, document: &ServerKeyDocument) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx_execute(
            &tx,
            "INSERT INTO server_key_documents (server_name, document, valid_until_ts, fetched_ts)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (server_name) DO UPDATE SET
                 document = excluded.document,
                 valid_until_ts = excluded.valid_until_ts,
                 fetched_ts = excluded.fetched_ts
             WHERE excluded.valid_until_ts >= server_key_documents.valid_until_ts",
            &[
                &document.server_name,
                &document.document,
                &document.valid_until_ts,
                &document.fetched_ts,
            ],
        )
        .await?;
        for key in &document.keys {
            // A key ID whose public key changed starts over with the new
            // document's validity.
            tx_execute(
                &tx,
                "INSERT INTO server_verify_keys
                     (server_name, key_id, public_key, valid_until_ts, expired_ts)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (server_name, key_id) DO UPDATE SET
                     valid_until_ts = CASE
                         WHEN server_verify_keys.public_key = excluded.public_key
                         THEN GREATEST(server_verify_keys.valid_until_ts, excluded.valid_until_ts)
                         ELSE excluded.valid_until_ts END,
                     expired_ts = CASE
                         WHEN server_verify_keys.public_key = excluded.public_key
                         THEN COALESCE(server_verify_keys.expired_ts, excluded.expired_ts)
                         ELSE excluded.expired_ts END,
                     public_key = excluded.public_key",
                &[
                    &document.server_name,
                    &key.key_id,
                    &key.public_key,
                    &key.valid_until_ts,
                    &key.expired_ts,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn server_verify_keys(&self, server_name: &str) -> StoreResult<Vec<ServerVerifyKey>> {
        self.query(KEYS_OF_SERVER, &[&server_name], key_from_row)
            .await
    }

    async fn server_key_document(
        &self,
        server_name: &str,
    ) -> StoreResult<Option<ServerKeyDocument>> {
        let found = self
            .query_opt(
                "SELECT document, valid_until_ts, fetched_ts FROM server_key_documents
                 WHERE server_name = $1",
                &[&server_name],
                |row| {
                    Ok((
                        get::<String>(row, 0)?,
                        get::<i64>(row, 1)?,
                        get::<i64>(row, 2)?,
                    ))
                },
            )
            .await?;
        let Some((document, valid_until_ts, fetched_ts)) = found else {
            return Ok(None);
        };
        // Read after the document: keys only grow, so they cover it.
        let keys = self.server_verify_keys(server_name).await?;
        Ok(Some(ServerKeyDocument {
            server_name: server_name.to_owned(),
            document,
            valid_until_ts,
            fetched_ts,
            keys,
        }))
    }
}

//! Other servers' signing keys.

use async_trait::async_trait;
use myelin_store::{ServerKeyDocument, ServerKeyStore, ServerVerifyKey, StoreResult};
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

fn keys_of(
    conn: &rusqlite::Connection,
    server_name: &str,
) -> rusqlite::Result<Vec<ServerVerifyKey>> {
    conn.prepare_cached(
        "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_verify_keys
         WHERE server_name = ?1 ORDER BY key_id",
    )?
    .query_map(params![server_name], |row| {
        Ok(ServerVerifyKey {
            key_id: row.get(0)?,
            public_key: row.get(1)?,
            valid_until_ts: row.get(2)?,
            expired_ts: row.get(3)?,
        })
    })?
    .collect()
}

#[async_trait]
impl ServerKeyStore for SqliteStore {
    async fn store_server_keys(&self, document: &ServerKeyDocument) -> StoreResult<()> {
        let document = document.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO server_key_documents (server_name, document, valid_until_ts, fetched_ts)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (server_name) DO UPDATE SET
                     document = excluded.document,
                     valid_until_ts = excluded.valid_until_ts,
                     fetched_ts = excluded.fetched_ts
                 WHERE excluded.valid_until_ts >= server_key_documents.valid_until_ts",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    document.server_name,
                    document.document,
                    document.valid_until_ts,
                    document.fetched_ts
                ])
            })
            .map_err(map_error)?;
            let mut upsert = tx
                .prepare_cached(
                    // A key ID whose public key changed starts over with the
                    // new document's validity.
                    "INSERT INTO server_verify_keys
                         (server_name, key_id, public_key, valid_until_ts, expired_ts)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (server_name, key_id) DO UPDATE SET
                         valid_until_ts = CASE
                             WHEN server_verify_keys.public_key = excluded.public_key
                             THEN MAX(server_verify_keys.valid_until_ts, excluded.valid_until_ts)
                             ELSE excluded.valid_until_ts END,
                         expired_ts = CASE
                             WHEN server_verify_keys.public_key = excluded.public_key
                             THEN COALESCE(server_verify_keys.expired_ts, excluded.expired_ts)
                             ELSE excluded.expired_ts END,
                         public_key = excluded.public_key",
                )
                .map_err(map_error)?;
            for key in &document.keys {
                upsert
                    .execute(params![
                        document.server_name,
                        key.key_id,
                        key.public_key,
                        key.valid_until_ts,
                        key.expired_ts
                    ])
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn server_verify_keys(&self, server_name: &str) -> StoreResult<Vec<ServerVerifyKey>> {
        let server_name = server_name.to_owned();
        self.read(move |conn| keys_of(conn, &server_name)).await
    }

    async fn server_key_document(
        &self,
        server_name: &str,
    ) -> StoreResult<Option<ServerKeyDocument>> {
        let server_name = server_name.to_owned();
        self.read(move |conn| {
            let Some((document, valid_until_ts, fetched_ts)) = conn
                .prepare_cached(
                    "SELECT document, valid_until_ts, fetched_ts FROM server_key_documents
                     WHERE server_name = ?1",
                )?
                .query_row(params![server_name], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?
            else {
                return Ok(None);
            };
            Ok(Some(ServerKeyDocument {
                keys: keys_of(conn, &server_name)?,
                server_name,
                document,
                valid_until_ts,
                fetched_ts,
            }))
        })
        .await
    }
}

//! Server-side key backup.

use async_trait::async_trait;
use myelin_store::{BackupKey, BackupScope, BackupVersion, KeyBackupStore, StoreResult};
use tokio_postgres::Row;

use crate::{PostgresStore, Transaction, changed_one, get, map_error, tx_execute, tx_query_opt};

const KEY_COLUMNS: &str =
    "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data";

fn key_from_row(row: &Row) -> StoreResult<BackupKey> {
    Ok(BackupKey {
        room_id: get(row, 0)?,
        session_id: get(row, 1)?,
        first_message_index: get(row, 2)?,
        forwarded_count: get(row, 3)?,
        is_verified: get(row, 4)?,
        session_data: get(row, 5)?,
    })
}

/// The scope as the room and session a query matches (`NULL`: any).
fn scope_params(scope: BackupScope<'_>) -> (Option<&str>, Option<&str>) {
    match scope {
        BackupScope::All => (None, None),
        BackupScope::Room(room) => (Some(room), None),
        BackupScope::Session(room, session) => (Some(room), Some(session)),
    }
}

/// The version's keys changed: its etag moves.
async fn bump_etag(tx: &Transaction<'_>, user_id: &str, version: i64) -> StoreResult<()> {
    tx_execute(
        tx,
        "UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
        &[&user_id, &version],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl KeyBackupStore for PostgresStore {
    async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &str,
    ) -> StoreResult<i64> {
        let version = self
            .query_opt(
                "INSERT INTO room_key_backup_versions
                     (user_id, version, algorithm, auth_data, etag, deleted)
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, FALSE
                 FROM room_key_backup_versions WHERE user_id = $1
                 RETURNING version",
                &[&user_id, &algorithm, &auth_data],
                |row| get::<i64>(row, 0),
            )
            .await?;
        version.ok_or(myelin_store::StoreError::NotFound)
    }

    async fn backup_version(
        &self,
        user_id: &str,
        version: Option<i64>,
    ) -> StoreResult<Option<BackupVersion>> {
        let found = self
            .query_opt(
                "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                        (SELECT COUNT(*) FROM room_key_backups k
                         WHERE k.user_id = v.user_id AND k.version = v.version)
                 FROM room_key_backup_versions v
                 WHERE v.user_id = $1 AND NOT v.deleted AND ($2::BIGINT IS NULL OR v.version = $2)
                 ORDER BY v.version DESC LIMIT 1",
                &[&user_id, &version],
                |row| {
                    Ok(BackupVersion {
                        version: get(row, 0)?,
                        algorithm: get(row, 1)?,
                        auth_data: get(row, 2)?,
                        etag: get(row, 3)?,
                        count: get::<i64>(row, 4)?.max(0) as u64,
                    })
                },
            )
            .await?;
        Ok(found)
    }

    async fn update_backup_version(
        &self,
        user_id: &str,
        version: i64,
        auth_data: &str,
    ) -> StoreResult<bool> {
        let rows = self
            .execute(
                "UPDATE room_key_backup_versions SET auth_data = $3
                 WHERE user_id = $1 AND version = $2 AND NOT deleted",
                &[&user_id, &version, &auth_data],
            )
            .await?;
        Ok(changed_one(rows).is_ok())
    }

    async fn delete_backup_version(&self, user_id: &str, version: i64) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let rows = tx_execute(
            &tx,
            "UPDATE room_key_backup_versions SET deleted = TRUE
             WHERE user_id = $1 AND version = $2 AND NOT deleted",
            &[&user_id, &version],
        )
        .await?;
        tx_execute(
            &tx,
            "DELETE FROM room_key_backups WHERE user_id = $1 AND version = $2",
            &[&user_id, &version],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(rows == 1)
    }

    async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let mut changed = false;
        for key in keys {
            let kept = tx_query_opt(
                &tx,
                &format!(
                    "SELECT {KEY_COLUMNS} FROM room_key_backups
                     WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4
                     FOR UPDATE"
                ),
                &[&user_id, &version, &key.room_id, &key.session_id],
                key_from_row,
            )
            .await?;
            if kept.as_ref().is_some_and(|kept| !key.replaces(kept)) {
                continue;
            }
            tx_execute(
                &tx,
                "INSERT INTO room_key_backups (user_id, version, room_id, session_id,
                     first_message_index, forwarded_count, is_verified, session_data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                     first_message_index = EXCLUDED.first_message_index,
                     forwarded_count = EXCLUDED.forwarded_count,
                     is_verified = EXCLUDED.is_verified,
                     session_data = EXCLUDED.session_data",
                &[
                    &user_id,
                    &version,
                    &key.room_id,
                    &key.session_id,
                    &key.first_message_index,
                    &key.forwarded_count,
                    &key.is_verified,
                    &key.session_data,
                ],
            )
            .await?;
            changed = true;
        }
        if changed {
            bump_etag(&tx, user_id, version).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<Vec<BackupKey>> {
        let (room, session) = scope_params(scope);
        self.query(
            &format!(
                "SELECT {KEY_COLUMNS} FROM room_key_backups
                 WHERE user_id = $1 AND version = $2
                   AND ($3::TEXT IS NULL OR room_id = $3) AND ($4::TEXT IS NULL OR session_id = $4)
                 ORDER BY room_id, session_id"
            ),
            &[&user_id, &version, &room, &session],
            key_from_row,
        )
        .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<()> {
        let (room, session) = scope_params(scope);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx_execute(
            &tx,
            "DELETE FROM room_key_backups
             WHERE user_id = $1 AND version = $2
               AND ($3::TEXT IS NULL OR room_id = $3) AND ($4::TEXT IS NULL OR session_id = $4)",
            &[&user_id, &version, &room, &session],
        )
        .await?;
        bump_etag(&tx, user_id, version).await?;
        tx.commit().await.map_err(map_error)
    }
}

//! Server-side key backup.

use async_trait::async_trait;
use myelin_store::{BackupKey, BackupScope, BackupVersion, KeyBackupStore, StoreResult};
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

const KEY_COLUMNS: &str =
    "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data";

fn key_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<BackupKey> {
    Ok(BackupKey {
        room_id: row.get(0)?,
        session_id: row.get(1)?,
        first_message_index: row.get(2)?,
        forwarded_count: row.get(3)?,
        is_verified: row.get(4)?,
        session_data: row.get(5)?,
    })
}

/// The scope as the room and session a query matches (`NULL`: any).
fn scope_params(scope: BackupScope<'_>) -> (Option<String>, Option<String>) {
    match scope {
        BackupScope::All => (None, None),
        BackupScope::Room(room) => (Some(room.to_owned()), None),
        BackupScope::Session(room, session) => (Some(room.to_owned()), Some(session.to_owned())),
    }
}

/// The version's keys changed: its etag moves.
fn bump_etag(tx: &rusqlite::Transaction<'_>, user_id: &str, version: i64) -> StoreResult<()> {
    tx.prepare_cached(
        "UPDATE room_key_backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
    )
    .and_then(|mut statement| statement.execute(params![user_id, version]))
    .map_err(map_error)?;
    Ok(())
}

#[async_trait]
impl KeyBackupStore for SqliteStore {
    async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &str,
    ) -> StoreResult<i64> {
        let (user_id, algorithm, auth_data) = (
            user_id.to_owned(),
            algorithm.to_owned(),
            auth_data.to_owned(),
        );
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO room_key_backup_versions
                     (user_id, version, algorithm, auth_data, etag, deleted)
                 SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, 0, 0
                 FROM room_key_backup_versions WHERE user_id = ?1
                 RETURNING version",
            )
            .and_then(|mut statement| {
                statement.query_row(params![user_id, algorithm, auth_data], |row| row.get(0))
            })
            .map_err(map_error)
        })
        .await
    }

    async fn backup_version(
        &self,
        user_id: &str,
        version: Option<i64>,
    ) -> StoreResult<Option<BackupVersion>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                        (SELECT COUNT(*) FROM room_key_backups k
                         WHERE k.user_id = v.user_id AND k.version = v.version)
                 FROM room_key_backup_versions v
                 WHERE v.user_id = ?1 AND NOT v.deleted AND (?2 IS NULL OR v.version = ?2)
                 ORDER BY v.version DESC LIMIT 1",
            )?
            .query_row(params![user_id, version], |row| {
                Ok(BackupVersion {
                    version: row.get(0)?,
                    algorithm: row.get(1)?,
                    auth_data: row.get(2)?,
                    etag: row.get(3)?,
                    count: row.get::<_, i64>(4)?.max(0) as u64,
                })
            })
            .optional()
        })
        .await
    }

    async fn update_backup_version(
        &self,
        user_id: &str,
        version: i64,
        auth_data: &str,
    ) -> StoreResult<bool> {
        let (user_id, auth_data) = (user_id.to_owned(), auth_data.to_owned());
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE room_key_backup_versions SET auth_data = ?3
                 WHERE user_id = ?1 AND version = ?2 AND NOT deleted",
            )
            .and_then(|mut statement| statement.execute(params![user_id, version, auth_data]))
            .map(|rows| rows == 1)
            .map_err(map_error)
        })
        .await
    }

    async fn delete_backup_version(&self, user_id: &str, version: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            let rows = tx
                .prepare_cached(
                    "UPDATE room_key_backup_versions SET deleted = 1
                     WHERE user_id = ?1 AND version = ?2 AND NOT deleted",
                )
                .and_then(|mut statement| statement.execute(params![user_id, version]))
                .map_err(map_error)?;
            tx.prepare_cached("DELETE FROM room_key_backups WHERE user_id = ?1 AND version = ?2")
                .and_then(|mut statement| statement.execute(params![user_id, version]))
                .map_err(map_error)?;
            Ok(rows == 1)
        })
        .await
    }

    async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            let mut changed = false;
            for key in keys {
                let kept = tx
                    .prepare_cached(&format!(
                        "SELECT {KEY_COLUMNS} FROM room_key_backups
                         WHERE user_id = ?1 AND version = ?2 AND room_id = ?3 AND session_id = ?4"
                    ))
                    .and_then(|mut statement| {
                        statement
                            .query_row(
                                params![user_id, version, key.room_id, key.session_id],
                                key_from_row,
                            )
                            .optional()
                    })
                    .map_err(map_error)?;
                if kept.as_ref().is_some_and(|kept| !key.replaces(kept)) {
                    continue;
                }
                tx.prepare_cached(
                    "INSERT INTO room_key_backups (user_id, version, room_id, session_id,
                         first_message_index, forwarded_count, is_verified, session_data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                         first_message_index = excluded.first_message_index,
                         forwarded_count = excluded.forwarded_count,
                         is_verified = excluded.is_verified,
                         session_data = excluded.session_data",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        user_id,
                        version,
                        key.room_id,
                        key.session_id,
                        key.first_message_index,
                        key.forwarded_count,
                        key.is_verified,
                        key.session_data
                    ])
                })
                .map_err(map_error)?;
                changed = true;
            }
            if changed {
                bump_etag(tx, &user_id, version)?;
            }
            Ok(())
        })
        .await
    }

    async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<Vec<BackupKey>> {
        let user_id = user_id.to_owned();
        let (room, session) = scope_params(scope);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM room_key_backups
                 WHERE user_id = ?1 AND version = ?2
                   AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
                 ORDER BY room_id, session_id"
            ))?
            .query_map(params![user_id, version, room, session], key_from_row)?
            .collect()
        })
        .await
    }

    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        scope: BackupScope<'_>,
    ) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        let (room, session) = scope_params(scope);
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM room_key_backups
                 WHERE user_id = ?1 AND version = ?2
                   AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
            )
            .and_then(|mut statement| statement.execute(params![user_id, version, room, session]))
            .map_err(map_error)?;
            bump_etag(tx, &user_id, version)
        })
        .await
    }
}

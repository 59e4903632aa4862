//! Users, profiles and filters.

use async_trait::async_trait;
use myelin_store::{
    AccountStore, FilterStore, NewUser, NonceUse, ProfileUpdate, StoreError, StoreResult,
    UserRecord,
};
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

fn changed_one(rows: usize) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, new_user: NewUser) -> StoreResult<()> {
        self.write(move |tx| {
            tx.prepare_cached("INSERT INTO users (user_id, password_hash, is_admin, created_ts) VALUES (?1, ?2, ?3, ?4)").and_then(|mut statement| statement.execute(params![new_user.user_id, new_user.password_hash, new_user.is_admin, new_user.created_ts],))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn user(&self, user_id: &str) -> StoreResult<Option<UserRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url
                 FROM users WHERE user_id = ?1",
            )
            .and_then(|mut statement| {
                statement.query_row([user_id], |row| {
                    Ok(UserRecord {
                        user_id: row.get(0)?,
                        password_hash: row.get(1)?,
                        is_admin: row.get(2)?,
                        deactivated: row.get(3)?,
                        displayname: row.get(4)?,
                        avatar_url: row.get(5)?,
                    })
                })
            })
            .optional()
        })
        .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let (user_id, password_hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |tx| {
            let rows = tx
                .prepare_cached("UPDATE users SET password_hash = ?2 WHERE user_id = ?1")
                .and_then(|mut statement| statement.execute([user_id, password_hash]))
                .map_err(map_error)?;
            changed_one(rows)
        })
        .await
    }

    async fn set_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            let rows = tx
                .prepare_cached("UPDATE users SET is_admin = ?2 WHERE user_id = ?1")
                .and_then(|mut statement| statement.execute(params![user_id, is_admin]))
                .map_err(map_error)?;
            changed_one(rows)
        })
        .await
    }

    async fn deactivate_user(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            let rows = tx
                .prepare_cached(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL,
                     avatar_url = NULL WHERE user_id = ?1",
                )
                .and_then(|mut statement| statement.execute([&user_id]))
                .map_err(map_error)?;
            changed_one(rows)?;
            for table in crate::devices::DEVICE_TABLES {
                tx.prepare_cached(&format!("DELETE FROM {table} WHERE user_id = ?1"))
                    .and_then(|mut statement| statement.execute([&user_id]))
                    .map_err(map_error)?;
            }
            for statement in [
                "DELETE FROM cross_signing_keys WHERE user_id = ?1",
                "DELETE FROM key_signatures WHERE target_user_id = ?1 OR signer_user_id = ?1",
                "DELETE FROM room_key_backups WHERE user_id = ?1",
                "DELETE FROM room_key_backup_versions WHERE user_id = ?1",
            ] {
                tx.prepare_cached(statement)
                    .and_then(|mut statement| statement.execute([&user_id]))
                    .map_err(map_error)?;
            }
            let everything = myelin_store::DeviceListSubject::Everything;
            crate::keys::note_device_list_change(tx, &user_id, &everything)?;
            Ok(())
        })
        .await
    }

    async fn update_profile(&self, user_id: &str, update: ProfileUpdate) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            let exists: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM users WHERE user_id = ?1")
                .and_then(|mut statement| statement.query_row([&user_id], |row| row.get(0)))
                .optional()
                .map_err(map_error)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            if let Some(displayname) = update.displayname {
                tx.prepare_cached("UPDATE users SET displayname = ?2 WHERE user_id = ?1")
                    .and_then(|mut statement| statement.execute(params![user_id, displayname]))
                    .map_err(map_error)?;
            }
            if let Some(avatar_url) = update.avatar_url {
                tx.prepare_cached("UPDATE users SET avatar_url = ?2 WHERE user_id = ?1")
                    .and_then(|mut statement| statement.execute(params![user_id, avatar_url]))
                    .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn use_registration_nonce(
        &self,
        nonce: &str,
        expires_ts: i64,
        now: i64,
        max_live: u32,
    ) -> StoreResult<NonceUse> {
        let nonce = nonce.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM used_registration_nonces WHERE expires_ts <= ?1")
                .and_then(|mut statement| statement.execute([now]))
                .map_err(map_error)?;
            let (used, live): (bool, i64) = tx
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM used_registration_nonces WHERE nonce = ?1),
                            (SELECT COUNT(*) FROM used_registration_nonces)",
                )
                .and_then(|mut statement| {
                    statement.query_row([&nonce], |row| Ok((row.get(0)?, row.get(1)?)))
                })
                .map_err(map_error)?;
            if used {
                return Ok(NonceUse::AlreadyUsed);
            }
            if live >= i64::from(max_live) {
                return Ok(NonceUse::TooMany);
            }
            tx.prepare_cached(
                "INSERT INTO used_registration_nonces (nonce, expires_ts) VALUES (?1, ?2)",
            )
            .and_then(|mut statement| statement.execute(params![nonce, expires_ts]))
            .map_err(map_error)?;
            Ok(NonceUse::Fresh)
        })
        .await
    }
}

#[async_trait]
impl FilterStore for SqliteStore {
    async fn create_filter(&self, user_id: &str, filter_json: &str) -> StoreResult<String> {
        let (user_id, filter_json) = (user_id.to_owned(), filter_json.to_owned());
        self.write(move |tx| {
            let next: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
                )
                .and_then(|mut statement| statement.query_row([&user_id], |row| row.get(0)))
                .map_err(map_error)?;
            tx.prepare_cached(
                "INSERT INTO filters (user_id, filter_id, filter_json) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut statement| statement.execute(params![user_id, next, filter_json]))
            .map_err(map_error)?;
            Ok(next.to_string())
        })
        .await
    }

    async fn filter(&self, user_id: &str, filter_id: &str) -> StoreResult<Option<String>> {
        let Ok(filter_id) = filter_id.parse::<i64>() else {
            return Ok(None);
        };
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT filter_json FROM filters WHERE user_id = ?1 AND filter_id = ?2",
            )
            .and_then(|mut statement| {
                statement.query_row(params![user_id, filter_id], |row| row.get(0))
            })
            .optional()
        })
        .await
    }
}

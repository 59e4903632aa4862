//! Users, profiles and filters.

use async_trait::async_trait;
use myelin_store::{
    AccountStore, FilterStore, NewUser, NonceUse, ProfileUpdate, StoreError, StoreResult,
    UserRecord,
};
use tokio_postgres::Row;

use crate::{PostgresStore, changed_one, get, map_error, tx_execute, tx_query_opt};

/// How often `create_filter` retries when a concurrent upload of the same
/// user took the ID it computed.
const FILTER_ID_ATTEMPTS: usize = 5;

fn user_from_row(row: &Row) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        user_id: get(row, 0)?,
        password_hash: get(row, 1)?,
        is_admin: get(row, 2)?,
        deactivated: get(row, 3)?,
        displayname: get(row, 4)?,
        avatar_url: get(row, 5)?,
    })
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn create_user(&self, new_user: NewUser) -> StoreResult<()> {
        self.execute(
            "INSERT INTO users (user_id, password_hash, is_admin, created_ts) VALUES ($1, $2, $3, $4)",
            &[
                &new_user.user_id,
                &new_user.password_hash,
                &new_user.is_admin,
                &new_user.created_ts,
            ],
        )
        .await?;
        Ok(())
    }

    async fn user(&self, user_id: &str) -> StoreResult<Option<UserRecord>> {
        self.query_opt(
            "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url
             FROM users WHERE user_id = $1",
            &[&user_id],
            user_from_row,
        )
        .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let rows = self
            .execute(
                "UPDATE users SET password_hash = $2 WHERE user_id = $1",
                &[&user_id, &password_hash],
            )
            .await?;
        changed_one(rows)
    }

    async fn set_admin(&self, user_id: &str, is_admin: bool) -> StoreResult<()> {
        let rows = self
            .execute(
                "UPDATE users SET is_admin = $2 WHERE user_id = $1",
                &[&user_id, &is_admin],
            )
            .await?;
        changed_one(rows)
    }

    async fn deactivate_user(&self, user_id: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let rows = tx_execute(
            &tx,
            "UPDATE users SET deactivated = TRUE, password_hash = NULL, displayname = NULL,
             avatar_url = NULL WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        changed_one(rows)?;
        for table in crate::devices::DEVICE_TABLES {
            tx_execute(
                &tx,
                &format!("DELETE FROM {table} WHERE user_id = $1"),
                &[&user_id],
            )
            .await?;
        }
        tx_execute(
            &tx,
            "DELETE FROM cross_signing_keys WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        for statement in [
            "DELETE FROM key_signatures WHERE target_user_id = $1 OR signer_user_id = $1",
            "DELETE FROM room_key_backups WHERE user_id = $1",
            "DELETE FROM room_key_backup_versions WHERE user_id = $1",
        ] {
            tx_execute(&tx, statement, &[&user_id]).await?;
        }
        let everything = myelin_store::DeviceListSubject::Everything;
        crate::keys::note_device_list_change(&tx, user_id, &everything).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn update_profile(&self, user_id: &str, update: ProfileUpdate) -> StoreResult<()> {
        // One statement: each field is either replaced or kept as it is.
        let rows = self
            .execute(
                "UPDATE users SET
                     displayname = CASE WHEN $2 THEN $3 ELSE displayname END,
                     avatar_url = CASE WHEN $4 THEN $5 ELSE avatar_url END
                 WHERE user_id = $1",
                &[
                    &user_id,
                    &update.displayname.is_some(),
                    &update.displayname.flatten(),
                    &update.avatar_url.is_some(),
                    &update.avatar_url.flatten(),
                ],
            )
            .await?;
        changed_one(rows)
    }

    async fn use_registration_nonce(
        &self,
        nonce: &str,
        expires_ts: i64,
        now: i64,
        max_live: u32,
    ) -> StoreResult<NonceUse> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx_execute(
            &tx,
            "DELETE FROM used_registration_nonces WHERE expires_ts <= $1",
            &[&now],
        )
        .await?;
        let (used, live) = tx_query_opt(
            &tx,
            "SELECT EXISTS (SELECT 1 FROM used_registration_nonces WHERE nonce = $1),
                    (SELECT COUNT(*) FROM used_registration_nonces)",
            &[&nonce],
            |row| Ok((get::<bool>(row, 0)?, get::<i64>(row, 1)?)),
        )
        .await?
        .unwrap_or((false, 0));
        if used {
            return Ok(NonceUse::AlreadyUsed);
        }
        if live >= i64::from(max_live) {
            return Ok(NonceUse::TooMany);
        }
        // A concurrent offer of the same nonce may have won since the check.
        let inserted = tx_execute(
            &tx,
            "INSERT INTO used_registration_nonces (nonce, expires_ts) VALUES ($1, $2)
             ON CONFLICT (nonce) DO NOTHING",
            &[&nonce, &expires_ts],
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
        Ok(if inserted == 1 {
            NonceUse::Fresh
        } else {
            NonceUse::AlreadyUsed
        })
    }
}

#[async_trait]
impl FilterStore for PostgresStore {
    async fn create_filter(&self, user_id: &str, filter_json: &str) -> StoreResult<String> {
        // The next ID is computed in the insert itself; two uploads of one
        // user at once can still pick the same one, and the loser retries.
        let mut attempt = 1;
        loop {
            let created = self
                .query_opt(
                    "INSERT INTO filters (user_id, filter_id, filter_json)
                     SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $1
                     RETURNING filter_id",
                    &[&user_id, &filter_json],
                    |row| get::<i64>(row, 0),
                )
                .await;
            match created {
                Ok(Some(filter_id)) => return Ok(filter_id.to_string()),
                Ok(None) => {
                    return Err(StoreError::Corrupt(
                        "inserting a filter returned no ID".to_owned(),
                    ));
                }
                Err(StoreError::Conflict(_)) if attempt < FILTER_ID_ATTEMPTS => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }

    async fn filter(&self, user_id: &str, filter_id: &str) -> StoreResult<Option<String>> {
        let Ok(filter_id) = filter_id.parse::<i64>() else {
            return Ok(None);
        };
        self.query_opt(
            "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2",
            &[&user_id, &filter_id],
            |row| get(row, 0),
        )
        .await
    }
}

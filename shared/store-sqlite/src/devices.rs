//! Devices and access tokens.

use async_trait::async_trait;
use myelin_store::{Device, DeviceStore, StoreError, StoreResult, TokenOwner};
use rusqlite::{OptionalExtension, params};

use crate::{SqliteStore, map_error};

fn device_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        user_id: row.get(0)?,
        device_id: row.get(1)?,
        display_name: row.get(2)?,
        last_seen_ts: row.get(3)?,
        last_seen_ip: row.get(4)?,
    })
}

const DEVICE_COLUMNS: &str = "user_id, device_id, display_name, last_seen_ts, last_seen_ip";

/// Every table holding something of one device: deleting a device empties
/// each of them for it.
pub(crate) const DEVICE_TABLES: &[&str] = &[
    "access_tokens",
    "devices",
    "pushers",
    "device_keys",
    "one_time_keys",
    // After one_time_keys, whose triggers count down into it.
    "one_time_key_counts",
    "fallback_keys",
    "to_device_inbox",
];

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn add_device_token(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        access_token: &str,
    ) -> StoreResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let display_name = display_name.map(str::to_owned);
        let access_token = access_token.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts").and_then(|mut statement| statement.execute(params![user_id, device_id, display_name, myelin_types::now_millis()],))
            .map_err(map_error)?;
            tx.prepare_cached("INSERT INTO access_tokens (token, user_id, device_id) VALUES (?1, ?2, ?3)").and_then(|mut statement| statement.execute(params![access_token, user_id, device_id],))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn token_owner(&self, access_token: &str) -> StoreResult<Option<TokenOwner>> {
        let access_token = access_token.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT t.user_id, t.device_id, u.is_admin FROM access_tokens t
                 JOIN users u ON u.user_id = t.user_id
                 WHERE t.token = ?1 AND u.deactivated = 0",
            )
            .and_then(|mut statement| {
                statement.query_row([access_token], |row| {
                    Ok(TokenOwner {
                        user_id: row.get(0)?,
                        device_id: row.get(1)?,
                        is_admin: row.get(2)?,
                    })
                })
            })
            .optional()
        })
        .await
    }

    async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 ORDER BY device_id"
            ))?;
            let rows = statement.query_map([user_id], device_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<Device>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 AND device_id = ?2"
            ))
            .and_then(|mut statement| statement.query_row([user_id, device_id], device_from_row))
            .optional()
        })
        .await
    }

    async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> StoreResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let display_name = display_name.map(str::to_owned);
        self.write(move |tx| {
            let rows = tx
                .prepare_cached(
                    "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                )
                .and_then(|mut statement| {
                    statement.execute(params![user_id, device_id, display_name])
                })
                .map_err(map_error)?;
            if rows == 0 {
                Err(StoreError::NotFound)
            } else {
                crate::keys::note_devices_changed(tx, &user_id, std::slice::from_ref(&device_id))
            }
        })
        .await
    }

    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        let device_ids = device_ids.to_vec();
        self.write(move |tx| {
            for table in DEVICE_TABLES {
                let mut statement = tx
                    .prepare_cached(&format!(
                        "DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"
                    ))
                    .map_err(map_error)?;
                for device_id in &device_ids {
                    statement
                        .execute([&user_id, device_id])
                        .map_err(map_error)?;
                }
            }
            crate::keys::note_devices_changed(tx, &user_id, &device_ids)?;
            Ok(())
        })
        .await
    }

    async fn delete_token(&self, access_token: &str) -> StoreResult<()> {
        let access_token = access_token.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM access_tokens WHERE token = ?1")
                .and_then(|mut statement| statement.execute([access_token]))
                .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn delete_other_devices(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        let keep = keep.map(str::to_owned);
        // `IS NOT NULL` holds for every device: no `keep`, none kept (an
        // empty string would keep a device whose ID is empty).
        self.write(move |tx| {
            let deleted: Vec<String> = tx
                .prepare_cached(
                    "SELECT device_id FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2
                     UNION SELECT device_id FROM device_keys
                     WHERE user_id = ?1 AND device_id IS NOT ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_map(params![user_id, keep], |row| row.get(0))?
                        .collect()
                })
                .map_err(map_error)?;
            for table in DEVICE_TABLES {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE user_id = ?1 AND device_id IS NOT ?2"
                ))
                .and_then(|mut statement| statement.execute(params![user_id, keep]))
                .map_err(map_error)?;
            }
            crate::keys::note_devices_changed(tx, &user_id, &deleted)?;
            Ok(())
        })
        .await
    }
}

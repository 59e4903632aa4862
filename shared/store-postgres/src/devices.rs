//! Devices and access tokens.

use async_trait::async_trait;
use myelin_store::{Device, DeviceStore, StoreResult, TokenOwner};
use tokio_postgres::Row;

use crate::{PostgresStore, changed_one, get, map_error, tx_execute};

fn device_from_row(row: &Row) -> StoreResult<Device> {
    Ok(Device {
        user_id: get(row, 0)?,
        device_id: get(row, 1)?,
        display_name: get(row, 2)?,
        last_seen_ts: get(row, 3)?,
        last_seen_ip: get(row, 4)?,
    })
}

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
impl DeviceStore for PostgresStore {
    async fn add_device_token(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        access_token: &str,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx_execute(
            &tx,
            "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = excluded.last_seen_ts",
            &[
                &user_id,
                &device_id,
                &display_name,
                &myelin_types::now_millis(),
            ],
        )
        .await?;
        tx_execute(
            &tx,
            "INSERT INTO access_tokens (token, user_id, device_id) VALUES ($1, $2, $3)",
            &[&access_token, &user_id, &device_id],
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn token_owner(&self, access_token: &str) -> StoreResult<Option<TokenOwner>> {
        self.query_opt(
            "SELECT t.user_id, t.device_id, u.is_admin FROM access_tokens t
             JOIN users u ON u.user_id = t.user_id
             WHERE t.token = $1 AND NOT u.deactivated",
            &[&access_token],
            |row| {
                Ok(TokenOwner {
                    user_id: get(row, 0)?,
                    device_id: get(row, 1)?,
                    is_admin: get(row, 2)?,
                })
            },
        )
        .await
    }

    async fn devices(&self, user_id: &str) -> StoreResult<Vec<Device>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the locale.
        self.query(
            r#"SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip
               FROM devices WHERE user_id = $1 ORDER BY device_id COLLATE "C""#,
            &[&user_id],
            device_from_row,
        )
        .await
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<Device>> {
        self.query_opt(
            "SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip
             FROM devices WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id],
            device_from_row,
        )
        .await
    }

    async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let rows = tx_execute(
            &tx,
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            &[&user_id, &device_id, &display_name],
        )
        .await?;
        changed_one(rows)?;
        crate::keys::note_devices_changed(&tx, user_id, &[device_id.to_owned()]).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        for table in DEVICE_TABLES {
            tx_execute(
                &tx,
                &format!("DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2)"),
                &[&user_id, &device_ids],
            )
            .await?;
        }
        crate::keys::note_devices_changed(&tx, user_id, device_ids).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn delete_token(&self, access_token: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM access_tokens WHERE token = $1",
            &[&access_token],
        )
        .await?;
        Ok(())
    }

    async fn delete_other_devices(&self, user_id: &str, keep: Option<&str>) -> StoreResult<()> {
        // IS DISTINCT FROM NULL holds for every device: no `keep`, none kept.
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        // The devices as deleted, not as read before: one made meanwhile is
        // deleted and told of too.
        let mut deleted = std::collections::BTreeSet::new();
        for table in DEVICE_TABLES {
            let delete =
                format!("DELETE FROM {table} WHERE user_id = $1 AND device_id IS DISTINCT FROM $2");
            if matches!(*table, "devices" | "device_keys") {
                let ids: Vec<String> = crate::tx_query(
                    &tx,
                    &format!("{delete} RETURNING device_id"),
                    &[&user_id, &keep],
                    |row| get(row, 0),
                )
                .await?;
                deleted.extend(ids);
            } else {
                tx_execute(&tx, &delete, &[&user_id, &keep]).await?;
            }
        }
        let deleted: Vec<String> = deleted.into_iter().collect();
        crate::keys::note_devices_changed(&tx, user_id, &deleted).await?;
        tx.commit().await.map_err(map_error)
    }
}

//! End-to-end encryption keys.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_store::{
    ClaimedKey, CrossSigningStore, DeviceKeysRecord, DeviceListEntry, DeviceListStore,
    DeviceListSubject, KeyClaim, KeySignature, KeyStore, RemoteDeviceList, StoreError, StoreResult,
    UploadedKey,
};
use myelin_types::StreamPosition;

use crate::counters::{counter_position, take_position};
use crate::{PostgresStore, Transaction, get, map_error, tx_execute, tx_query_opt};

const DEVICE_LISTS: &str = "device_lists";

/// Notes in `tx` that the user's device list changed, and what changed.
pub(crate) async fn note_device_list_change(
    tx: &Transaction<'_>,
    user_id: &str,
    subject: &DeviceListSubject,
) -> StoreResult<()> {
    let position = take_position(tx, DEVICE_LISTS).await?;
    let (device_id, signing_keys) = subject.columns();
    tx_execute(
        tx,
        "INSERT INTO device_list_changes (position, user_id, device_id, signing_keys)
         VALUES ($1, $2, $3, $4)",
        &[&position.0, &user_id, &device_id, &signing_keys],
    )
    .await?;
    Ok(())
}

/// Notes a change of each device of `device_ids`; of the whole list when
/// there is none.
pub(crate) async fn note_devices_changed(
    tx: &Transaction<'_>,
    user_id: &str,
    device_ids: &[String],
) -> StoreResult<()> {
    if device_ids.is_empty() {
        return note_device_list_change(tx, user_id, &DeviceListSubject::Everything).await;
    }
    for device_id in device_ids {
        note_device_list_change(tx, user_id, &DeviceListSubject::Device(device_id.clone())).await?;
    }
    Ok(())
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn set_device_keys(&self, record: DeviceKeysRecord) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let stored: Option<String> = tx_query_opt(
            &tx,
            "SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2 FOR UPDATE",
            &[&record.user_id, &record.device_id],
            |row| get(row, 0),
        )
        .await?;
        if stored.as_deref() == Some(record.key_json.as_str()) {
            return Ok(false);
        }
        tx_execute(
            &tx,
            "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = EXCLUDED.key_json",
            &[&record.user_id, &record.device_id, &record.key_json],
        )
        .await?;
        let subject = DeviceListSubject::Device(record.device_id.clone());
        note_device_list_change(&tx, &record.user_id, &subject).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn device_keys(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> StoreResult<Vec<DeviceKeysRecord>> {
        let all = device_ids.is_empty();
        self.query(
            "SELECT user_id, device_id, key_json FROM device_keys
             WHERE user_id = $1 AND ($2 OR device_id = ANY($3))
             ORDER BY device_id",
            &[&user_id, &all, &device_ids],
            |row| {
                Ok(DeviceKeysRecord {
                    user_id: get(row, 0)?,
                    device_id: get(row, 1)?,
                    key_json: get(row, 2)?,
                })
            },
        )
        .await
    }

    async fn add_keys(
        &self,
        user_id: &str,
        device_id: &str,
        one_time: &[UploadedKey],
        fallback: &[UploadedKey],
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        for key in one_time {
            let added = tx_execute(
                &tx,
                "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    &user_id,
                    &device_id,
                    &key.algorithm,
                    &key.key_id,
                    &key.key_json,
                ],
            )
            .await?;
            if added == 0 {
                let stored: Option<String> = tx_query_opt(
                    &tx,
                    "SELECT key_json FROM one_time_keys
                     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
                    &[&user_id, &device_id, &key.algorithm, &key.key_id],
                    |row| get(row, 0),
                )
                .await?;
                if stored.as_deref() != Some(key.key_json.as_str()) {
                    return Err(StoreError::Conflict(format!(
                        "one-time key {} is already uploaded with other content",
                        key.key_id
                    )));
                }
            }
        }
        for key in fallback {
            tx_execute(
                &tx,
                "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
                 VALUES ($1, $2, $3, $4, $5, FALSE)
                 ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
                     key_id = EXCLUDED.key_id, key_json = EXCLUDED.key_json,
                     used = fallback_keys.used AND fallback_keys.key_json = EXCLUDED.key_json",
                &[
                    &user_id,
                    &device_id,
                    &key.algorithm,
                    &key.key_id,
                    &key.key_json,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let rows = self
            .query(
                "SELECT algorithm, count FROM one_time_key_counts
                 WHERE user_id = $1 AND device_id = $2 AND count > 0",
                &[&user_id, &device_id],
                |row| Ok((get::<String>(row, 0)?, get::<i64>(row, 1)?)),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(algorithm, count)| (algorithm, count.max(0) as u64))
            .collect())
    }

    async fn unused_fallback_algorithms(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<Vec<String>> {
        self.query(
            "SELECT algorithm FROM fallback_keys
             WHERE user_id = $1 AND device_id = $2 AND NOT used ORDER BY algorithm",
            &[&user_id, &device_id],
            |row| get(row, 0),
        )
        .await
    }

    async fn claim_keys(&self, claims: &[KeyClaim]) -> StoreResult<Vec<ClaimedKey>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let mut claimed = Vec::new();
        for claim in claims {
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&claim.user_id, &claim.device_id, &claim.algorithm];
            // A row another claimer holds is skipped, never handed out twice.
            let mut key: Option<(String, String)> = tx_query_opt(
                &tx,
                "DELETE FROM one_time_keys WHERE (user_id, device_id, algorithm, key_id) IN (
                     SELECT user_id, device_id, algorithm, key_id FROM one_time_keys
                     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                     ORDER BY key_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key_id, key_json",
                &params,
                |row| Ok((get(row, 0)?, get(row, 1)?)),
            )
            .await?;
            if key.is_none() {
                key = tx_query_opt(
                    &tx,
                    "UPDATE fallback_keys SET used = TRUE
                     WHERE user_id = $1 AND device_id = $2 AND algorithm = $3
                     RETURNING key_id, key_json",
                    &params,
                    |row| Ok((get(row, 0)?, get(row, 1)?)),
                )
                .await?;
            }
            if let Some((key_id, key_json)) = key {
                claimed.push(ClaimedKey {
                    user_id: claim.user_id.clone(),
                    device_id: claim.device_id.clone(),
                    key_id,
                    key_json,
                });
            }
        }
        tx.commit().await.map_err(map_error)?;
        Ok(claimed)
    }
}

#[async_trait]
impl DeviceListStore for PostgresStore {
    async fn note_remote_device_list_change(&self, user_id: &str) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        note_device_list_change(&tx, user_id, &DeviceListSubject::Everything).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn device_list_changes(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT user_id FROM device_list_changes WHERE position > $1 AND position <= $2
             GROUP BY user_id ORDER BY MIN(position) LIMIT $3",
            &[&after.0, &upto.0, &limit],
            |row| get(row, 0),
        )
        .await
    }

    async fn device_list_entries(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<DeviceListEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            "SELECT position, user_id, device_id, signing_keys FROM device_list_changes
             WHERE position > $1 AND position <= $2 ORDER BY position LIMIT $3",
            &[&after.0, &upto.0, &limit],
            |row| {
                Ok(DeviceListEntry {
                    position: StreamPosition(get(row, 0)?),
                    user_id: get(row, 1)?,
                    subject: DeviceListSubject::from_columns(get(row, 2)?, get(row, 3)?),
                })
            },
        )
        .await
    }

    async fn device_list_chain_position(
        &self,
        user_id: &str,
        before: Option<StreamPosition>,
    ) -> StoreResult<Option<StreamPosition>> {
        let before = before.map_or(i64::MAX, |position| position.0);
        let position: Option<i64> = self
            .query_opt(
                "SELECT MAX(position) FROM device_list_changes
                 WHERE user_id = $1 AND position < $2 AND NOT signing_keys",
                &[&user_id, &before],
                |row| get(row, 0),
            )
            .await?
            .flatten();
        Ok(position.map(StreamPosition))
    }

    async fn max_device_list_position(&self) -> StoreResult<StreamPosition> {
        counter_position(self, DEVICE_LISTS).await
    }

    async fn remote_device_lists(&self, user_ids: &[String]) -> StoreResult<Vec<RemoteDeviceList>> {
        self.query(
            "SELECT user_id, stream_id, list_json FROM remote_device_lists
             WHERE user_id = ANY($1)",
            &[&user_ids],
            |row| {
                Ok(RemoteDeviceList {
                    user_id: get(row, 0)?,
                    stream_id: get(row, 1)?,
                    list_json: get(row, 2)?,
                })
            },
        )
        .await
    }

    async fn keep_remote_device_list(&self, list: &RemoteDeviceList) -> StoreResult<bool> {
        let kept = self
            .execute(
                &format!(
                    "INSERT INTO remote_device_lists (user_id, stream_id, list_json)
                     SELECT $1, $2, $3 WHERE {}
                     ON CONFLICT (user_id) DO UPDATE SET
                         stream_id = EXCLUDED.stream_id, list_json = EXCLUDED.list_json
                     WHERE remote_device_lists.stream_id < EXCLUDED.stream_id",
                    // A leave committing meanwhile waits for this write or
                    // is seen by it, so its clean-up never misses the list.
                    shares_a_room("$1", true)
                ),
                &[&list.user_id, &list.stream_id, &list.list_json],
            )
            .await?;
        Ok(kept == 1)
    }

    async fn advance_remote_device_list(
        &self,
        list: &RemoteDeviceList,
        prev_stream_id: i64,
    ) -> StoreResult<bool> {
        let replaced = self
            .execute(
                "UPDATE remote_device_lists SET stream_id = $2, list_json = $3
                 WHERE user_id = $1 AND stream_id = $4",
                &[
                    &list.user_id,
                    &list.stream_id,
                    &list.list_json,
                    &prev_stream_id,
                ],
            )
            .await?;
        Ok(replaced == 1)
    }

    async fn forget_remote_device_list(&self, user_id: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM remote_device_lists WHERE user_id = $1",
            &[&user_id],
        )
        .await?;
        Ok(())
    }

    async fn shares_room_with_local_user(&self, user_id: &str) -> StoreResult<bool> {
        let shares = self
            .query_opt(
                &format!("SELECT 1 WHERE {}", shares_a_room("$1", false)),
                &[&user_id],
                |_| Ok(()),
            )
            .await?;
        Ok(shares.is_some())
    }
}

/// Whether the user `user` (a column or a parameter) is joined to a room a
/// local user (an account here) is joined to; `locking` holds the two
/// memberships found until the transaction ends.
fn shares_a_room(user: &str, locking: bool) -> String {
    let lock = if locking {
        "FOR SHARE OF theirs, ours"
    } else {
        ""
    };
    format!(
        "EXISTS (
            SELECT 1 FROM current_state theirs
            JOIN current_state ours ON ours.room_id = theirs.room_id
                AND ours.event_type = 'm.room.member' AND ours.membership = 'join'
            JOIN users ON users.user_id = ours.state_key
            WHERE theirs.state_key = {user} AND theirs.event_type = 'm.room.member'
                AND theirs.membership = 'join' {lock})"
    )
}

/// Run after `$2`'s membership of room `$1` stopped being a join: drops the
/// kept device lists of those who no longer share a room with a local
/// user. That is `$2` if they are another server's, else anyone joined to
/// the room.
pub(crate) fn forget_unshared_device_lists() -> String {
    format!(
        "DELETE FROM remote_device_lists kept
         WHERE (kept.user_id = $2 OR (EXISTS (SELECT 1 FROM users WHERE user_id = $2)
             AND kept.user_id IN (SELECT state_key FROM current_state WHERE room_id = $1
                 AND event_type = 'm.room.member' AND membership = 'join')))
         AND NOT {}",
        shares_a_room("kept.user_id", false)
    )
}

#[async_trait]
impl CrossSigningStore for PostgresStore {
    async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(String, String)],
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        for (key_type, key_json) in keys {
            tx_execute(
                &tx,
                "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = EXCLUDED.key_json",
                &[&user_id, key_type, key_json],
            )
            .await?;
        }
        note_device_list_change(&tx, user_id, &DeviceListSubject::SigningKeys).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn cross_signing_keys(&self, user_id: &str) -> StoreResult<BTreeMap<String, String>> {
        let rows = self
            .query(
                "SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = $1",
                &[&user_id],
                |row| Ok((get::<String>(row, 0)?, get::<String>(row, 1)?)),
            )
            .await?;
        Ok(rows.into_iter().collect())
    }

    async fn add_key_signatures(&self, signatures: &[KeySignature]) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        let mut targets = std::collections::BTreeSet::new();
        for signature in signatures {
            tx_execute(
                &tx,
                "INSERT INTO key_signatures
                     (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
                 DO UPDATE SET signature = EXCLUDED.signature",
                &[
                    &signature.target_user_id,
                    &signature.target_key_id,
                    &signature.signer_user_id,
                    &signature.signer_key_id,
                    &signature.signature,
                ],
            )
            .await?;
            // A signature of a device changes that device's keys; any
            // other, a cross-signing key.
            let of_device = tx_query_opt(
                &tx,
                "SELECT 1 FROM device_keys WHERE user_id = $1 AND device_id = $2",
                &[&signature.target_user_id, &signature.target_key_id],
                |_| Ok(()),
            )
            .await?
            .is_some();
            let subject = if of_device {
                DeviceListSubject::Device(signature.target_key_id.clone())
            } else {
                DeviceListSubject::SigningKeys
            };
            targets.insert((signature.target_user_id.as_str(), subject));
        }
        for (user_id, subject) in targets {
            note_device_list_change(&tx, user_id, &subject).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn key_signatures(&self, target_user_id: &str) -> StoreResult<Vec<KeySignature>> {
        self.query(
            "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
             FROM key_signatures WHERE target_user_id = $1
             ORDER BY target_key_id, signer_user_id, signer_key_id",
            &[&target_user_id],
            |row| {
                Ok(KeySignature {
                    target_user_id: get(row, 0)?,
                    target_key_id: get(row, 1)?,
                    signer_user_id: get(row, 2)?,
                    signer_key_id: get(row, 3)?,
                    signature: get(row, 4)?,
                })
            },
        )
        .await
    }
}

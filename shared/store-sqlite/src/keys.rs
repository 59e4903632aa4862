//! End-to-end encryption keys.

use std::collections::BTreeMap;

use async_trait::async_trait;
use myelin_store::{
    ClaimedKey, CrossSigningStore, DeviceKeysRecord, DeviceListEntry, DeviceListStore,
    DeviceListSubject, KeyClaim, KeySignature, KeyStore, RemoteDeviceList, StoreError, StoreResult,
    UploadedKey,
};
use myelin_types::StreamPosition;
use rusqlite::{OptionalExtension, params};

use crate::counters::{counter_position, take_position};
use crate::{SqliteStore, map_error};

const DEVICE_LISTS: &str = "device_lists";

/// Notes in `tx` that the user's device list changed, and what changed.
pub(crate) fn note_device_list_change(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    subject: &DeviceListSubject,
) -> StoreResult<()> {
    let position = take_position(tx, DEVICE_LISTS)?;
    let (device_id, signing_keys) = subject.columns();
    tx.prepare_cached(
        "INSERT INTO device_list_changes (position, user_id, device_id, signing_keys)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut statement| {
        statement.execute(params![position.0, user_id, device_id, signing_keys])
    })
    .map_err(map_error)?;
    Ok(())
}

/// Notes a change of each device of `device_ids`; of the whole list when
/// there is none.
pub(crate) fn note_devices_changed(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    device_ids: &[String],
) -> StoreResult<()> {
    if device_ids.is_empty() {
        return note_device_list_change(tx, user_id, &DeviceListSubject::Everything);
    }
    for device_id in device_ids {
        note_device_list_change(tx, user_id, &DeviceListSubject::Device(device_id.clone()))?;
    }
    Ok(())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn set_device_keys(&self, record: DeviceKeysRecord) -> StoreResult<bool> {
        self.write(move |tx| {
            let stored: Option<String> = tx
                .prepare_cached(
                    "SELECT key_json FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
                )
                .and_then(|mut statement| {
                    statement
                        .query_row(params![record.user_id, record.device_id], |row| row.get(0))
                        .optional()
                })
                .map_err(map_error)?;
            if stored.as_deref() == Some(record.key_json.as_str()) {
                return Ok(false);
            }
            tx.prepare_cached(
                "INSERT INTO device_keys (user_id, device_id, key_json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
            )
            .and_then(|mut statement| {
                statement.execute(params![record.user_id, record.device_id, record.key_json])
            })
            .map_err(map_error)?;
            let subject = DeviceListSubject::Device(record.device_id.clone());
            note_device_list_change(tx, &record.user_id, &subject)?;
            Ok(true)
        })
        .await
    }

    async fn device_keys(
        &self,
        user_id: &str,
        device_ids: &[String],
    ) -> StoreResult<Vec<DeviceKeysRecord>> {
        let user_id = user_id.to_owned();
        let wanted = serde_json::to_string(device_ids).unwrap_or_else(|_| "[]".to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT user_id, device_id, key_json FROM device_keys
                 WHERE user_id = ?1 AND (json_array_length(?2) = 0
                       OR device_id IN (SELECT value FROM json_each(?2)))
                 ORDER BY device_id",
            )?
            .query_map(params![user_id, wanted], |row| {
                Ok(DeviceKeysRecord {
                    user_id: row.get(0)?,
                    device_id: row.get(1)?,
                    key_json: row.get(2)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn add_keys(
        &self,
        user_id: &str,
        device_id: &str,
        one_time: &[UploadedKey],
        fallback: &[UploadedKey],
    ) -> StoreResult<()> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        let (one_time, fallback) = (one_time.to_vec(), fallback.to_vec());
        self.write(move |tx| {
            for key in &one_time {
                let stored: Option<String> = tx
                    .prepare_cached(
                        "SELECT key_json FROM one_time_keys
                         WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 AND key_id = ?4",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(
                                params![user_id, device_id, key.algorithm, key.key_id],
                                |row| row.get(0),
                            )
                            .optional()
                    })
                    .map_err(map_error)?;
                match stored {
                    Some(json) if json == key.key_json => {}
                    Some(_) => {
                        return Err(StoreError::Conflict(format!(
                            "one-time key {} is already uploaded with other content",
                            key.key_id
                        )));
                    }
                    None => {
                        tx.prepare_cached(
                            "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .and_then(|mut statement| {
                            statement.execute(params![
                                user_id,
                                device_id,
                                key.algorithm,
                                key.key_id,
                                key.key_json
                            ])
                        })
                        .map_err(map_error)?;
                    }
                }
            }
            for key in &fallback {
                tx.prepare_cached(
                    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
                         key_id = excluded.key_id, key_json = excluded.key_json,
                         used = fallback_keys.used AND fallback_keys.key_json = excluded.key_json",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        user_id,
                        device_id,
                        key.algorithm,
                        key.key_id,
                        key.key_json
                    ])
                })
                .map_err(map_error)?;
            }
            Ok(())
        })
        .await
    }

    async fn one_time_key_counts(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT algorithm, count FROM one_time_key_counts
                 WHERE user_id = ?1 AND device_id = ?2 AND count > 0",
            )?
            .query_map(params![user_id, device_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })?
            .collect()
        })
        .await
    }

    async fn unused_fallback_algorithms(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> StoreResult<Vec<String>> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT algorithm FROM fallback_keys
                 WHERE user_id = ?1 AND device_id = ?2 AND NOT used ORDER BY algorithm",
            )?
            .query_map(params![user_id, device_id], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn claim_keys(&self, claims: &[KeyClaim]) -> StoreResult<Vec<ClaimedKey>> {
        let claims = claims.to_vec();
        // One writer at a time: a key deleted here is seen gone by the next.
        self.write(move |tx| {
            let mut claimed = Vec::new();
            for claim in &claims {
                let wanted = params![claim.user_id, claim.device_id, claim.algorithm];
                let mut key: Option<(String, String)> = tx
                    .prepare_cached(
                        "DELETE FROM one_time_keys WHERE rowid = (
                             SELECT rowid FROM one_time_keys
                             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                             ORDER BY key_id LIMIT 1)
                         RETURNING key_id, key_json",
                    )
                    .and_then(|mut statement| {
                        statement
                            .query_row(wanted, |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                    })
                    .map_err(map_error)?;
                if key.is_none() {
                    key = tx
                        .prepare_cached(
                            "UPDATE fallback_keys SET used = 1
                             WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                             RETURNING key_id, key_json",
                        )
                        .and_then(|mut statement| {
                            statement
                                .query_row(wanted, |row| Ok((row.get(0)?, row.get(1)?)))
                                .optional()
                        })
                        .map_err(map_error)?;
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
            Ok(claimed)
        })
        .await
    }
}

#[async_trait]
impl DeviceListStore for SqliteStore {
    async fn note_remote_device_list_change(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| note_device_list_change(tx, &user_id, &DeviceListSubject::Everything))
            .await
    }

    async fn device_list_changes(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT user_id FROM device_list_changes WHERE position > ?1 AND position <= ?2
                 GROUP BY user_id ORDER BY MIN(position) LIMIT ?3",
            )?
            .query_map(params![after.0, upto.0, limit], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn device_list_entries(
        &self,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<DeviceListEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT position, user_id, device_id, signing_keys FROM device_list_changes
                 WHERE position > ?1 AND position <= ?2 ORDER BY position LIMIT ?3",
            )?
            .query_map(params![after.0, upto.0, limit], |row| {
                Ok(DeviceListEntry {
                    position: StreamPosition(row.get(0)?),
                    user_id: row.get(1)?,
                    subject: DeviceListSubject::from_columns(row.get(2)?, row.get(3)?),
                })
            })?
            .collect()
        })
        .await
    }

    async fn device_list_chain_position(
        &self,
        user_id: &str,
        before: Option<StreamPosition>,
    ) -> StoreResult<Option<StreamPosition>> {
        let user_id = user_id.to_owned();
        let before = before.map_or(i64::MAX, |position| position.0);
        let position: Option<i64> = self
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT MAX(position) FROM device_list_changes
                     WHERE user_id = ?1 AND position < ?2 AND NOT signing_keys",
                )?
                .query_row(params![user_id, before], |row| row.get(0))
            })
            .await?;
        Ok(position.map(StreamPosition))
    }

    async fn max_device_list_position(&self) -> StoreResult<StreamPosition> {
        self.read(|conn| counter_position(conn, DEVICE_LISTS))
            .await
            .map(StreamPosition)
    }

    async fn remote_device_lists(&self, user_ids: &[String]) -> StoreResult<Vec<RemoteDeviceList>> {
        let user_ids = user_ids.to_vec();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT user_id, stream_id, list_json FROM remote_device_lists WHERE user_id = ?1",
            )?;
            let mut lists = Vec::new();
            for user_id in &user_ids {
                let list = statement
                    .query_row([user_id], |row| {
                        Ok(RemoteDeviceList {
                            user_id: row.get(0)?,
                            stream_id: row.get(1)?,
                            list_json: row.get(2)?,
                        })
                    })
                    .optional()?;
                lists.extend(list);
            }
            Ok(lists)
        })
        .await
    }

    async fn keep_remote_device_list(&self, list: &RemoteDeviceList) -> StoreResult<bool> {
        let list = list.clone();
        self.write(move |tx| {
            tx.prepare_cached(&format!(
                "INSERT INTO remote_device_lists (user_id, stream_id, list_json)
                 SELECT ?1, ?2, ?3 WHERE {}
                 ON CONFLICT (user_id) DO UPDATE SET
                     stream_id = excluded.stream_id, list_json = excluded.list_json
                 WHERE remote_device_lists.stream_id < excluded.stream_id",
                shares_a_room("?1")
            ))
            .and_then(|mut statement| {
                statement.execute(params![list.user_id, list.stream_id, list.list_json])
            })
            .map(|kept| kept == 1)
            .map_err(map_error)
        })
        .await
    }

    async fn advance_remote_device_list(
        &self,
        list: &RemoteDeviceList,
        prev_stream_id: i64,
    ) -> StoreResult<bool> {
        let list = list.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE remote_device_lists SET stream_id = ?2, list_json = ?3
                 WHERE user_id = ?1 AND stream_id = ?4",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    list.user_id,
                    list.stream_id,
                    list.list_json,
                    prev_stream_id
                ])
            })
            .map(|replaced| replaced == 1)
            .map_err(map_error)
        })
        .await
    }

    async fn forget_remote_device_list(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM remote_device_lists WHERE user_id = ?1")
                .and_then(|mut statement| statement.execute([user_id]))
                .map(|_| ())
                .map_err(map_error)
        })
        .await
    }

    async fn shares_room_with_local_user(&self, user_id: &str) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {}", shares_a_room("?1")))?
                .query_row([user_id], |row| row.get(0))
        })
        .await
    }
}

/// Whether the user `user` (a column or a parameter) is joined to a room a
/// local user (an account here) is joined to.
fn shares_a_room(user: &str) -> String {
    format!(
        "EXISTS (
            SELECT 1 FROM current_state theirs
            JOIN current_state ours ON ours.room_id = theirs.room_id
                AND ours.event_type = 'm.room.member' AND ours.membership = 'join'
            JOIN users ON users.user_id = ours.state_key
            WHERE theirs.state_key = {user} AND theirs.event_type = 'm.room.member'
                AND theirs.membership = 'join')"
    )
}

/// Run in `tx` after `member`'s membership of `room_id` stopped being a
/// join: drops the kept device lists of those who no longer share a room
/// with a local user. That is `member` if they are another server's, else
/// anyone joined to the room.
pub(crate) fn forget_unshared_device_lists(
    tx: &rusqlite::Transaction<'_>,
    room_id: &str,
    member: &str,
) -> StoreResult<()> {
    tx.prepare_cached(&format!(
        "DELETE FROM remote_device_lists
         WHERE (user_id = ?2 OR (EXISTS (SELECT 1 FROM users WHERE user_id = ?2)
             AND user_id IN (SELECT state_key FROM current_state WHERE room_id = ?1
                 AND event_type = 'm.room.member' AND membership = 'join')))
         AND NOT {}",
        shares_a_room("remote_device_lists.user_id")
    ))
    .and_then(|mut statement| statement.execute([room_id, member]))
    .map(|_| ())
    .map_err(map_error)
}

#[async_trait]
impl CrossSigningStore for SqliteStore {
    async fn set_cross_signing_keys(
        &self,
        user_id: &str,
        keys: &[(String, String)],
    ) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        let keys = keys.to_vec();
        self.write(move |tx| {
            for (key_type, key_json) in &keys {
                tx.prepare_cached(
                    "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
                )
                .and_then(|mut statement| statement.execute(params![user_id, key_type, key_json]))
                .map_err(map_error)?;
            }
            note_device_list_change(tx, &user_id, &DeviceListSubject::SigningKeys)
        })
        .await
    }

    async fn cross_signing_keys(&self, user_id: &str) -> StoreResult<BTreeMap<String, String>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT key_type, key_json FROM cross_signing_keys WHERE user_id = ?1",
            )?
            .query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
        })
        .await
    }

    async fn add_key_signatures(&self, signatures: &[KeySignature]) -> StoreResult<()> {
        let signatures = signatures.to_vec();
        self.write(move |tx| {
            let mut targets = std::collections::BTreeSet::new();
            for signature in &signatures {
                tx.prepare_cached(
                    "INSERT INTO key_signatures
                         (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)
                     DO UPDATE SET signature = excluded.signature",
                )
                .and_then(|mut statement| {
                    statement.execute(params![
                        signature.target_user_id,
                        signature.target_key_id,
                        signature.signer_user_id,
                        signature.signer_key_id,
                        signature.signature
                    ])
                })
                .map_err(map_error)?;
                // A signature of a device changes that device's keys; any
                // other, a cross-signing key.
                let of_device = tx
                    .prepare_cached(
                        "SELECT 1 FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
                    )
                    .and_then(|mut statement| {
                        statement.exists([&signature.target_user_id, &signature.target_key_id])
                    })
                    .map_err(map_error)?;
                let subject = if of_device {
                    DeviceListSubject::Device(signature.target_key_id.clone())
                } else {
                    DeviceListSubject::SigningKeys
                };
                targets.insert((signature.target_user_id.as_str(), subject));
            }
            for (user_id, subject) in targets {
                note_device_list_change(tx, user_id, &subject)?;
            }
            Ok(())
        })
        .await
    }

    async fn key_signatures(&self, target_user_id: &str) -> StoreResult<Vec<KeySignature>> {
        let target_user_id = target_user_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature
                 FROM key_signatures WHERE target_user_id = ?1
                 ORDER BY target_key_id, signer_user_id, signer_key_id",
            )?
            .query_map([target_user_id], |row| {
                Ok(KeySignature {
                    target_user_id: row.get(0)?,
                    target_key_id: row.get(1)?,
                    signer_user_id: row.get(2)?,
                    signer_key_id: row.get(3)?,
                    signature: row.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }
}

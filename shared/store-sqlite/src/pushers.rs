//! Pushers and the pushes each still owes.

use async_trait::async_trait;
use myelin_store::{PushDue, Pusher, PusherProgress, PusherStore, StoreResult};
use myelin_types::{Partition, StreamPosition};
use rusqlite::params;

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::notifications::{READ_JOINS, READ_UPTO, UNREAD};
use crate::{SqliteStore, map_error};

const PUSHER_COLUMNS: &str = "user_id, kind, app_id, pushkey, app_display_name, \
     device_display_name, profile_tag, lang, data, device_id, created_ts, last_position";

fn pusher_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PusherProgress> {
    Ok(PusherProgress {
        pusher: Pusher {
            user_id: row.get(0)?,
            kind: row.get(1)?,
            app_id: row.get(2)?,
            pushkey: row.get(3)?,
            app_display_name: row.get(4)?,
            device_display_name: row.get(5)?,
            profile_tag: row.get(6)?,
            lang: row.get(7)?,
            data: row.get(8)?,
            device_id: row.get(9)?,
            created_ts: row.get(10)?,
        },
        delivered_upto: StreamPosition(row.get(11)?),
    })
}

#[async_trait]
impl PusherStore for SqliteStore {
    async fn set_pusher(
        &self,
        pusher: Pusher,
        append: bool,
        from: StreamPosition,
    ) -> StoreResult<()> {
        let partition = i64::from(Partition::of_user(&pusher.user_id).0);
        self.write(move |tx| {
            if !append {
                tx.prepare_cached(
                    "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id <> ?3",
                )
                .and_then(|mut statement| {
                    statement.execute(params![pusher.app_id, pusher.pushkey, pusher.user_id])
                })
                .map_err(map_error)?;
            }
            tx.prepare_cached(
                "INSERT INTO pushers (user_id, kind, app_id, pushkey, app_display_name,
                     device_display_name, profile_tag, lang, data, device_id, created_ts,
                     last_position, user_partition)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
                     kind = excluded.kind, app_display_name = excluded.app_display_name,
                     device_display_name = excluded.device_display_name,
                     profile_tag = excluded.profile_tag, lang = excluded.lang,
                     data = excluded.data, device_id = excluded.device_id",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    pusher.user_id,
                    pusher.kind,
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.app_display_name,
                    pusher.device_display_name,
                    pusher.profile_tag,
                    pusher.lang,
                    pusher.data,
                    pusher.device_id,
                    pusher.created_ts,
                    from.0,
                    partition,
                ])
            })
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> StoreResult<bool> {
        let key = [user_id.to_owned(), app_id.to_owned(), pushkey.to_owned()];
        self.write(move |tx| {
            let removed = tx
                .prepare_cached(
                    "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                )
                .and_then(|mut statement| statement.execute(key))
                .map_err(map_error)?;
            Ok(removed > 0)
        })
        .await
    }

    async fn pushers_of_user(&self, user_id: &str) -> StoreResult<Vec<Pusher>> {
        let sql = format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY created_ts, app_id, pushkey"
        );
        let user_id = user_id.to_owned();
        let found = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map([user_id], pusher_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        Ok(found.into_iter().map(|progress| progress.pusher).collect())
    }

    async fn http_pushers(&self, partitions: &[u16]) -> StoreResult<Vec<PusherProgress>> {
        let sql = format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers
             WHERE kind = 'http' AND user_partition IN (SELECT value FROM json_each(?1))"
        );
        let partitions = serde_json::to_string(partitions).unwrap_or_else(|_| "[]".to_owned());
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map([partitions], pusher_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn pushes_due(
        &self,
        user_id: &str,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<PushDue>> {
        let sql = format!(
            "{READ_UPTO} SELECT {EVENT_COLUMNS}, a.highlight, a.sound
             FROM event_push_actions a {READ_JOINS}
             JOIN events AS e ON e.position = a.position
             WHERE a.user_id = ?1 AND a.position > ?2 AND a.position <= ?3
               AND e.redacted_by IS NULL AND {UNREAD}
             ORDER BY a.position LIMIT ?4"
        );
        let user_id = user_id.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(params![user_id, after.0, upto.0, limit], |row| {
                Ok(PushDue {
                    event: event_from_row(row)?,
                    highlight: row.get(16)?,
                    sound: row.get(17)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn advance_pusher(
        &self,
        user_id: &str,
        app_id: &str,
        pushkey: &str,
        position: StreamPosition,
    ) -> StoreResult<bool> {
        let key = [user_id.to_owned(), app_id.to_owned(), pushkey.to_owned()];
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE pushers SET last_position = MAX(last_position, ?4)
                     WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                )
                .and_then(|mut statement| {
                    statement.execute(params![key[0], key[1], key[2], position.0])
                })
                .map_err(map_error)?;
            Ok(changed > 0)
        })
        .await
    }
}

//! Pushers and the pushes each still owes.

use async_trait::async_trait;
use myelin_store::{PushDue, Pusher, PusherProgress, PusherStore, StoreResult};
use myelin_types::{Partition, StreamPosition};
use tokio_postgres::Row;

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::notifications::{READ_JOINS, READ_UPTO, UNREAD};
use crate::{PostgresStore, get, map_error, tx_execute};

const PUSHER_COLUMNS: &str = "user_id, kind, app_id, pushkey, app_display_name, \
     device_display_name, profile_tag, lang, data, device_id, created_ts, last_position";

fn pusher_from_row(row: &Row) -> StoreResult<PusherProgress> {
    Ok(PusherProgress {
        pusher: Pusher {
            user_id: get(row, 0)?,
            kind: get(row, 1)?,
            app_id: get(row, 2)?,
            pushkey: get(row, 3)?,
            app_display_name: get(row, 4)?,
            device_display_name: get(row, 5)?,
            profile_tag: get(row, 6)?,
            lang: get(row, 7)?,
            data: get(row, 8)?,
            device_id: get(row, 9)?,
            created_ts: get(row, 10)?,
        },
        delivered_upto: StreamPosition(get(row, 11)?),
    })
}

#[async_trait]
impl PusherStore for PostgresStore {
    async fn set_pusher(
        &self,
        pusher: Pusher,
        append: bool,
        from: StreamPosition,
    ) -> StoreResult<()> {
        let partition = Partition::of_user(&pusher.user_id).0 as i16;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        if !append {
            tx_execute(
                &tx,
                "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                &[&pusher.app_id, &pusher.pushkey, &pusher.user_id],
            )
            .await?;
        }
        tx_execute(
            &tx,
            "INSERT INTO pushers (user_id, kind, app_id, pushkey, app_display_name,
                 device_display_name, profile_tag, lang, data, device_id, created_ts,
                 last_position, user_partition)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
                 kind = excluded.kind, app_display_name = excluded.app_display_name,
                 device_display_name = excluded.device_display_name,
                 profile_tag = excluded.profile_tag, lang = excluded.lang,
                 data = excluded.data, device_id = excluded.device_id",
            &[
                &pusher.user_id,
                &pusher.kind,
                &pusher.app_id,
                &pusher.pushkey,
                &pusher.app_display_name,
                &pusher.device_display_name,
                &pusher.profile_tag,
                &pusher.lang,
                &pusher.data,
                &pusher.device_id,
                &pusher.created_ts,
                &from.0,
                &partition,
            ],
        )
        .await?;
        tx.commit().await.map_err(map_error)
    }

    async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> StoreResult<bool> {
        let removed = self
            .execute(
                "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
                &[&user_id, &app_id, &pushkey],
            )
            .await?;
        Ok(removed > 0)
    }

    async fn pushers_of_user(&self, user_id: &str) -> StoreResult<Vec<Pusher>> {
        let sql = format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey"
        );
        let found = self.query(&sql, &[&user_id], pusher_from_row).await?;
        Ok(found.into_iter().map(|progress| progress.pusher).collect())
    }

    async fn http_pushers(&self, partitions: &[u16]) -> StoreResult<Vec<PusherProgress>> {
        let sql = format!(
            "SELECT {PUSHER_COLUMNS} FROM pushers WHERE kind = 'http' AND user_partition = ANY($1)"
        );
        let partitions: Vec<i16> = partitions.iter().map(|&p| p as i16).collect();
        self.query(&sql, &[&partitions], pusher_from_row).await
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
             WHERE a.user_id = $1 AND a.position > $2 AND a.position <= $3
               AND e.redacted_by IS NULL AND {UNREAD}
             ORDER BY a.position LIMIT $4"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(&sql, &[&user_id, &after.0, &upto.0, &limit], |row| {
            Ok(PushDue {
                event: event_from_row(row)?,
                highlight: get(row, 16)?,
                sound: get(row, 17)?,
            })
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
        let changed = self
            .execute(
                "UPDATE pushers SET last_position = GREATEST(last_position, $4)
                 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
                &[&user_id, &app_id, &pushkey, &position.0],
            )
            .await?;
        Ok(changed > 0)
    }
}

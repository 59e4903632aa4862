//! Live typing notices.

use async_trait::async_trait;
use myelin_store::{StoreResult, TypingNotice, TypingStore};
use rusqlite::params;

use crate::{SqliteStore, map_error};

#[async_trait]
impl TypingStore for SqliteStore {
    async fn set_typing(
        &self,
        room_id: &str,
        user_id: &str,
        until_ms: Option<i64>,
    ) -> StoreResult<()> {
        let (room_id, user_id) = (room_id.to_owned(), user_id.to_owned());
        self.write(move |tx| {
            match until_ms {
                Some(until_ms) => tx
                    .prepare_cached(
                        "INSERT INTO typing (room_id, user_id, until_ms) VALUES (?1, ?2, ?3)
                         ON CONFLICT (room_id, user_id) DO UPDATE SET until_ms = excluded.until_ms",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![room_id, user_id, until_ms])
                    }),
                None => tx
                    .prepare_cached("DELETE FROM typing WHERE room_id = ?1 AND user_id = ?2")
                    .and_then(|mut statement| statement.execute(params![room_id, user_id])),
            }
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn typing_now(&self, now_ms: i64) -> StoreResult<Vec<TypingNotice>> {
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM typing WHERE until_ms <= ?1")
                .and_then(|mut statement| statement.execute([now_ms]))
                .map_err(map_error)?;
            let mut statement = tx
                .prepare_cached("SELECT room_id, user_id, until_ms FROM typing")
                .map_err(map_error)?;
            let rows = statement
                .query_map([], |row| {
                    Ok(TypingNotice {
                        room_id: row.get(0)?,
                        user_id: row.get(1)?,
                        until_ms: row.get(2)?,
                    })
                })
                .map_err(map_error)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_error)
        })
        .await
    }
}

//! Live typing notices.

use async_trait::async_trait;
use myelin_store::{StoreResult, TypingNotice, TypingStore};

use crate::{PostgresStore, get};

#[async_trait]
impl TypingStore for PostgresStore {
    async fn set_typing(
        &self,
        room_id: &str,
        user_id: &str,
        until_ms: Option<i64>,
    ) -> StoreResult<()> {
        match until_ms {
            Some(until_ms) => {
                self.execute(
                    "INSERT INTO typing (room_id, user_id, until_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id, user_id) DO UPDATE SET until_ms = EXCLUDED.until_ms",
                    &[&room_id, &user_id, &until_ms],
                )
                .await?
            }
            None => {
                self.execute(
                    "DELETE FROM typing WHERE room_id = $1 AND user_id = $2",
                    &[&room_id, &user_id],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn typing_now(&self, now_ms: i64) -> StoreResult<Vec<TypingNotice>> {
        self.execute("DELETE FROM typing WHERE until_ms <= $1", &[&now_ms])
            .await?;
        self.query(
            "SELECT room_id, user_id, until_ms FROM typing",
            &[],
            |row| {
                Ok(TypingNotice {
                    room_id: get(row, 0)?,
                    user_id: get(row, 1)?,
                    until_ms: get(row, 2)?,
                })
            },
        )
        .await
    }
}

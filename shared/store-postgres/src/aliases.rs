//! Room aliases.

use async_trait::async_trait;
use myelin_store::{AliasRecord, AliasStore, StoreResult};

use crate::{PostgresStore, changed_one, get};

#[async_trait]
impl AliasStore for PostgresStore {
    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)",
            &[&alias, &room_id, &creator],
        )
        .await?;
        Ok(())
    }

    async fn alias(&self, alias: &str) -> StoreResult<Option<AliasRecord>> {
        self.query_opt(
            "SELECT alias, room_id, creator FROM room_aliases WHERE alias = $1",
            &[&alias],
            |row| {
                Ok(AliasRecord {
                    alias: get(row, 0)?,
                    room_id: get(row, 1)?,
                    creator: get(row, 2)?,
                })
            },
        )
        .await
    }

    async fn delete_alias(&self, alias: &str) -> StoreResult<()> {
        let rows = self
            .execute("DELETE FROM room_aliases WHERE alias = $1", &[&alias])
            .await?;
        changed_one(rows)
    }

    async fn room_aliases(&self, room_id: &str) -> StoreResult<Vec<String>> {
        // COLLATE "C": byte order, as SQLite sorts, whatever the locale.
        self.query(
            r#"SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias COLLATE "C""#,
            &[&room_id],
            |row| get(row, 0),
        )
        .await
    }
}

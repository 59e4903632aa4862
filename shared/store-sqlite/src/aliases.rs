//! Room aliases.

use async_trait::async_trait;
use myelin_store::{AliasRecord, AliasStore, StoreError, StoreResult};
use rusqlite::OptionalExtension;

use crate::{SqliteStore, map_error};

#[async_trait]
impl AliasStore for SqliteStore {
    async fn create_alias(&self, alias: &str, room_id: &str, creator: &str) -> StoreResult<()> {
        let values = [alias.to_owned(), room_id.to_owned(), creator.to_owned()];
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO room_aliases (alias, room_id, creator) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut statement| statement.execute(values))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn alias(&self, alias: &str) -> StoreResult<Option<AliasRecord>> {
        let alias = alias.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT alias, room_id, creator FROM room_aliases WHERE alias = ?1")
                .and_then(|mut statement| {
                    statement.query_row([alias], |row| {
                        Ok(AliasRecord {
                            alias: row.get(0)?,
                            room_id: row.get(1)?,
                            creator: row.get(2)?,
                        })
                    })
                })
                .optional()
        })
        .await
    }

    async fn delete_alias(&self, alias: &str) -> StoreResult<()> {
        let alias = alias.to_owned();
        self.write(move |tx| {
            let rows = tx
                .prepare_cached("DELETE FROM room_aliases WHERE alias = ?1")
                .and_then(|mut statement| statement.execute([alias]))
                .map_err(map_error)?;
            if rows == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
        .await
    }

    async fn room_aliases(&self, room_id: &str) -> StoreResult<Vec<String>> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT alias FROM room_aliases WHERE room_id = ?1 ORDER BY alias",
            )?;
            let rows = statement.query_map([room_id], |row| row.get(0))?;
            rows.collect()
        })
        .await
    }
}

//! The room directory and the user directory search.

use async_trait::async_trait;
use myelin_store::{DirectoryScope, DirectoryStore, DirectoryUser, StoreResult};
use rusqlite::OptionalExtension;

use crate::{SqliteStore, map_error};

/// Users matching `?2` who are, unless `?3` widens it to everyone, joined
/// to a room the searcher `?1` is joined to or to a public one.
const SEARCH_USERS: &str = "
WITH public_rooms AS (
    SELECT cs.room_id FROM current_state cs JOIN events e ON e.event_id = cs.event_id
    WHERE cs.state_key = '' AND (
        (cs.event_type = 'm.room.join_rules'
            AND json_extract(e.pdu_json, '$.content.join_rule') = 'public')
        OR (cs.event_type = 'm.room.history_visibility'
            AND json_extract(e.pdu_json, '$.content.history_visibility') = 'world_readable'))
), searcher_rooms AS (
    SELECT room_id FROM current_state
    WHERE event_type = 'm.room.member' AND state_key = ?1 AND membership = 'join'
)
SELECT u.user_id, u.displayname, u.avatar_url FROM users u
WHERE u.deactivated = 0
  AND (instr(lower(u.user_id), ?2) > 0 OR instr(lower(COALESCE(u.displayname, '')), ?2) > 0)
  AND (?3 OR EXISTS (
      SELECT 1 FROM current_state m
      WHERE m.event_type = 'm.room.member' AND m.state_key = u.user_id AND m.membership = 'join'
        AND (m.room_id IN (SELECT room_id FROM searcher_rooms)
             OR m.room_id IN (SELECT room_id FROM public_rooms))))
ORDER BY u.user_id
LIMIT ?4";

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn set_room_published(&self, room_id: &str, published: bool) -> StoreResult<()> {
        let room_id = room_id.to_owned();
        let now = myelin_types::now_millis();
        self.write(move |tx| {
            let result = if published {
                tx.prepare_cached(
                    "INSERT INTO room_directory (room_id, published_ts) VALUES (?1, ?2)
                     ON CONFLICT (room_id) DO NOTHING",
                )
                .and_then(|mut statement| statement.execute(rusqlite::params![room_id, now]))
            } else {
                tx.prepare_cached("DELETE FROM room_directory WHERE room_id = ?1")
                    .and_then(|mut statement| statement.execute([room_id]))
            };
            result.map_err(map_error)?;
            Ok(())
        })
        .await
    }

    async fn room_published(&self, room_id: &str) -> StoreResult<bool> {
        let room_id = room_id.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM room_directory WHERE room_id = ?1")
                .and_then(|mut statement| statement.query_row([room_id], |_| Ok(())).optional())
                .map(|found| found.is_some())
        })
        .await
    }

    async fn published_rooms(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT room_id FROM room_directory WHERE room_id > ?1 ORDER BY room_id LIMIT ?2",
            )?;
            let rows = statement.query_map(rusqlite::params![after, limit], |row| row.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn published_room_count(&self) -> StoreResult<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM room_directory")
                .and_then(|mut statement| statement.query_row([], |row| row.get::<_, i64>(0)))
        })
        .await
        .map(|count| u64::try_from(count).unwrap_or(0))
    }

    async fn search_users(
        &self,
        searcher: &str,
        term: &str,
        scope: DirectoryScope,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryUser>> {
        let searcher = searcher.to_owned();
        let term = term.to_owned();
        let all = scope == DirectoryScope::AllUsers;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read_in_pool(move |conn| {
            let mut statement = conn.prepare_cached(SEARCH_USERS)?;
            let rows =
                statement.query_map(rusqlite::params![searcher, term, all, limit], |row| {
                    Ok(DirectoryUser {
                        user_id: row.get(0)?,
                        displayname: row.get(1)?,
                        avatar_url: row.get(2)?,
                    })
                })?;
            rows.collect()
        })
        .await
    }
}

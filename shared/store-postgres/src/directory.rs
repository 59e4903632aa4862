//! The room directory and the user directory search.

use async_trait::async_trait;
use myelin_store::{DirectoryScope, DirectoryStore, DirectoryUser, StoreResult};

use crate::{PostgresStore, get};

/// Users matching `$2` who are, unless `$3` widens it to everyone, joined
/// to a room the searcher `$1` is joined to or to a public one. The PDU is
/// read as `json`, not `jsonb`, which would refuse an escaped NUL.
const SEARCH_USERS: &str = r#"
WITH public_rooms AS (
    SELECT cs.room_id FROM current_state cs JOIN events e ON e.event_id = cs.event_id
    WHERE cs.state_key = '' AND (
        (cs.event_type = 'm.room.join_rules'
            AND (e.pdu_json::json -> 'content' ->> 'join_rule') = 'public')
        OR (cs.event_type = 'm.room.history_visibility'
            AND (e.pdu_json::json -> 'content' ->> 'history_visibility') = 'world_readable'))
), searcher_rooms AS (
    SELECT room_id FROM current_state
    WHERE event_type = 'm.room.member' AND state_key = $1 AND membership = 'join'
)
SELECT u.user_id, u.displayname, u.avatar_url FROM users u
WHERE NOT u.deactivated
  AND (strpos(lower(u.user_id), $2) > 0 OR strpos(lower(COALESCE(u.displayname, '')), $2) > 0)
  AND ($3 OR EXISTS (
      SELECT 1 FROM current_state m
      WHERE m.event_type = 'm.room.member' AND m.state_key = u.user_id AND m.membership = 'join'
        AND (m.room_id IN (SELECT room_id FROM searcher_rooms)
             OR m.room_id IN (SELECT room_id FROM public_rooms))))
ORDER BY u.user_id COLLATE "C"
LIMIT $4"#;

#[async_trait]
impl DirectoryStore for PostgresStore {
    async fn set_room_published(&self, room_id: &str, published: bool) -> StoreResult<()> {
        if published {
            self.execute(
                "INSERT INTO room_directory (room_id, published_ts)
                 VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)
                 ON CONFLICT (room_id) DO NOTHING",
                &[&room_id],
            )
            .await?;
        } else {
            self.execute("DELETE FROM room_directory WHERE room_id = $1", &[&room_id])
                .await?;
        }
        Ok(())
    }

    async fn room_published(&self, room_id: &str) -> StoreResult<bool> {
        let found = self
            .query_opt(
                "SELECT 1 FROM room_directory WHERE room_id = $1",
                &[&room_id],
                |_| Ok(()),
            )
            .await?;
        Ok(found.is_some())
    }

    async fn published_rooms(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let after = after.unwrap_or("");
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // COLLATE "C": byte order, as SQLite sorts, whatever the locale.
        self.query(
            r#"SELECT room_id FROM room_directory WHERE room_id > $1 COLLATE "C"
               ORDER BY room_id COLLATE "C" LIMIT $2"#,
            &[&after, &limit],
            |row| get(row, 0),
        )
        .await
    }

    async fn published_room_count(&self) -> StoreResult<u64> {
        let count: Option<i64> = self
            .query_opt("SELECT COUNT(*) FROM room_directory", &[], |row| {
                get(row, 0)
            })
            .await?;
        Ok(count
            .and_then(|count| u64::try_from(count).ok())
            .unwrap_or(0))
    }

    async fn search_users(
        &self,
        searcher: &str,
        term: &str,
        scope: DirectoryScope,
        limit: usize,
    ) -> StoreResult<Vec<DirectoryUser>> {
        let all = scope == DirectoryScope::AllUsers;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(SEARCH_USERS, &[&searcher, &term, &all, &limit], |row| {
            Ok(DirectoryUser {
                user_id: get(row, 0)?,
                displayname: get(row, 1)?,
                avatar_url: get(row, 2)?,
            })
        })
        .await
    }
}

//! Push actions written with events, and the counts and lists built on them.

use async_trait::async_trait;
use myelin_store::{
    MAIN_THREAD, NotificationRecord, NotificationStore, PersistEvent, RoomUnread, StoreResult,
    UnreadCounts,
};
use myelin_types::StreamPosition;
use rusqlite::params;

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::{SqliteStore, map_error};

/// The user's (the first parameter) latest read receipt, public or
/// private, per room and thread ('' for unthreaded): read once per query
/// rather than once per push action.
pub(crate) const READ_UPTO: &str = "WITH read_upto AS MATERIALIZED (
     SELECT r.room_id, r.thread_id, MAX(e2.position) AS position
     FROM receipts r JOIN events e2 ON e2.event_id = r.event_id
     WHERE r.user_id = ?1 AND r.receipt_type IN ('m.read', 'm.read.private')
     GROUP BY r.room_id, r.thread_id) ";

/// Joined to `event_push_actions a`: the receipts that may cover it.
pub(crate) const READ_JOINS: &str = " LEFT JOIN read_upto main_read
       ON main_read.room_id = a.room_id AND main_read.thread_id = ''
     LEFT JOIN read_upto thread_read
       ON thread_read.room_id = a.room_id AND thread_read.thread_id = a.thread_id ";

/// A push action no receipt covers: above the unthreaded receipt and its
/// thread's own.
pub(crate) const UNREAD: &str = "a.position > COALESCE(main_read.position, 0)
     AND a.position > COALESCE(thread_read.position, 0)";

pub(crate) fn insert_push_actions(
    tx: &rusqlite::Transaction<'_>,
    event: &PersistEvent,
    position: i64,
) -> StoreResult<()> {
    for action in &event.push_actions {
        tx.prepare_cached(
            "INSERT INTO event_push_actions (user_id, room_id, position, event_id, thread_id, highlight, sound)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                action.user_id,
                event.room_id,
                position,
                event.event_id,
                action.thread_id.as_deref().unwrap_or(MAIN_THREAD),
                action.highlight,
                action.sound,
            ])
        })
        .map_err(map_error)?;
    }
    Ok(())
}

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn unread_counts(&self, user_id: &str, room_id: &str) -> StoreResult<RoomUnread> {
        let sql = format!(
            "{READ_UPTO} SELECT a.thread_id, COUNT(*), SUM(a.highlight)
             FROM event_push_actions a {READ_JOINS}
             WHERE a.user_id = ?1 AND a.room_id = ?2 AND {UNREAD}
             GROUP BY a.thread_id"
        );
        let (user_id, room_id) = (user_id.to_owned(), room_id.to_owned());
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&sql)?;
                let rows = statement.query_map([user_id, room_id], |row| {
                    let thread: String = row.get(0)?;
                    let counts = UnreadCounts {
                        notifications: row.get::<_, i64>(1)?.max(0) as u64,
                        highlights: row.get::<_, i64>(2)?.max(0) as u64,
                    };
                    Ok((thread, counts))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?;
        let mut unread = RoomUnread::default();
        for (thread, counts) in rows {
            if thread == MAIN_THREAD {
                unread.main = counts;
            } else {
                unread.threads.push((thread, counts));
            }
        }
        Ok(unread)
    }

    async fn notifications(
        &self,
        user_id: &str,
        before: Option<StreamPosition>,
        limit: usize,
        only_highlight: bool,
    ) -> StoreResult<Vec<NotificationRecord>> {
        let sql = format!(
            "{READ_UPTO} SELECT {EVENT_COLUMNS}, a.highlight, NOT ({UNREAD})
             FROM event_push_actions a {READ_JOINS}
             JOIN events AS e ON e.position = a.position
             WHERE a.user_id = ?1 AND a.position < ?2 AND (?3 = 0 OR a.highlight)
             ORDER BY a.position DESC LIMIT ?4"
        );
        let user_id = user_id.to_owned();
        let before = before.map_or(i64::MAX, |position| position.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let rows =
                statement.query_map(params![user_id, before, only_highlight, limit], |row| {
                    Ok(NotificationRecord {
                        event: event_from_row(row)?,
                        highlight: row.get(16)?,
                        read: row.get(17)?,
                    })
                })?;
            rows.collect()
        })
        .await
    }

    async fn unread_rooms(&self, user_id: &str) -> StoreResult<u64> {
        let sql = format!(
            "{READ_UPTO} SELECT COUNT(DISTINCT a.room_id) FROM event_push_actions a {READ_JOINS}
             JOIN current_state cs ON cs.room_id = a.room_id AND cs.event_type = 'm.room.member'
                  AND cs.state_key = a.user_id AND cs.membership = 'join'
             WHERE a.user_id = ?1 AND {UNREAD}"
        );
        let user_id = user_id.to_owned();
        let rooms: i64 = self
            .read(move |conn| {
                conn.prepare_cached(&sql)?
                    .query_row([user_id], |row| row.get(0))
            })
            .await?;
        Ok(rooms.max(0) as u64)
    }

    async fn prune_read_push_actions(
        &self,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM event_push_actions WHERE rowid IN (
                 SELECT a.rowid FROM event_push_actions a
                 WHERE a.position <= ?1 AND EXISTS (
                 SELECT 1 FROM receipts r JOIN events re ON re.event_id = r.event_id
                 WHERE r.room_id = a.room_id AND r.user_id = a.user_id
                   AND r.receipt_type IN ('m.read', 'm.read.private')
                   AND r.thread_id IN ('', a.thread_id) AND re.position >= a.position)
                 ORDER BY a.position LIMIT ?2)",
            )
            .and_then(|mut statement| statement.execute(params![upto.0, limit]))
            .map(|removed| removed as u64)
            .map_err(map_error)
        })
        .await
    }
}

//! Push actions written with events, and the counts and lists built on them.

use async_trait::async_trait;
use myelin_store::{
    MAIN_THREAD, NotificationRecord, NotificationStore, PersistEvent, RoomUnread, StoreResult,
    UnreadCounts,
};
use myelin_types::StreamPosition;

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::pipeline::{Pipeline, params};
use crate::{PostgresStore, get};

/// The user's (the first parameter) latest read receipt, public or
/// private, per room and thread ('' for unthreaded): read once per query
/// rather than once per push action.
pub(crate) const READ_UPTO: &str = "WITH read_upto AS MATERIALIZED (
     SELECT r.room_id, r.thread_id, MAX(e2.position) AS position
     FROM receipts r JOIN events e2 ON e2.event_id = r.event_id
     WHERE r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private')
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

/// Queues the push actions of an event written before it in the
/// transaction; they take the event's position.
pub(crate) fn queue_push_actions<'a>(pipeline: &mut Pipeline<'a>, event: &'a PersistEvent) {
    for action in &event.push_actions {
        pipeline.push(
            "INSERT INTO event_push_actions (user_id, room_id, position, event_id, thread_id, highlight, sound)
             SELECT $1, $2, position, $3, $4, $5, $6 FROM events WHERE event_id = $3",
            params![
                &action.user_id,
                &event.room_id,
                &event.event_id,
                action.thread_id.as_deref().unwrap_or(MAIN_THREAD),
                action.highlight,
                &action.sound,
            ],
        );
    }
}

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn unread_counts(&self, user_id: &str, room_id: &str) -> StoreResult<RoomUnread> {
        let sql = format!(
            "{READ_UPTO} SELECT a.thread_id, COUNT(*), COUNT(*) FILTER (WHERE a.highlight)
             FROM event_push_actions a {READ_JOINS}
             WHERE a.user_id = $1 AND a.room_id = $2 AND {UNREAD}
             GROUP BY a.thread_id"
        );
        let rows = self
            .query(&sql, &[&user_id, &room_id], |row| {
                let thread: String = get(row, 0)?;
                let counts = UnreadCounts {
                    notifications: get::<i64>(row, 1)?.max(0) as u64,
                    highlights: get::<i64>(row, 2)?.max(0) as u64,
                };
                Ok((thread, counts))
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
             WHERE a.user_id = $1 AND a.position < $2 AND ($3 = FALSE OR a.highlight)
             ORDER BY a.position DESC LIMIT $4"
        );
        let before = before.map_or(i64::MAX, |position| position.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(&sql, &[&user_id, &before, &only_highlight, &limit], |row| {
            Ok(NotificationRecord {
                event: event_from_row(row)?,
                highlight: get(row, 16)?,
                read: get(row, 17)?,
            })
        })
        .await
    }

    async fn unread_rooms(&self, user_id: &str) -> StoreResult<u64> {
        let sql = format!(
            "{READ_UPTO} SELECT COUNT(DISTINCT a.room_id) FROM event_push_actions a {READ_JOINS}
             JOIN current_state cs ON cs.room_id = a.room_id AND cs.event_type = 'm.room.member'
                  AND cs.state_key = a.user_id AND cs.membership = 'join'
             WHERE a.user_id = $1 AND {UNREAD}"
        );
        let rooms = self
            .query(&sql, &[&user_id], |row| get::<i64>(row, 0))
            .await?;
        Ok(rooms.first().copied().unwrap_or(0).max(0) as u64)
    }

    async fn prune_read_push_actions(
        &self,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<u64> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "DELETE FROM event_push_actions WHERE (user_id, room_id, position) IN (
                 SELECT a.user_id, a.room_id, a.position FROM event_push_actions a
                 WHERE a.position <= $1 AND EXISTS (
                 SELECT 1 FROM receipts r JOIN events re ON re.event_id = r.event_id
                 WHERE r.room_id = a.room_id AND r.user_id = a.user_id
                   AND r.receipt_type IN ('m.read', 'm.read.private')
                   AND r.thread_id IN ('', a.thread_id) AND re.position >= a.position)
                 ORDER BY a.position LIMIT $2)",
            )
            .await
            .map_err(crate::map_error)?;
        client
            .execute(&statement, &[&upto.0, &limit])
            .await
            .map_err(crate::map_error)
    }
}

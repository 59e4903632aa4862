//! Push actions written with events, and the counts and lists built on them.

use async_trait::async_trait;
use myelin_store::{
    MAIN_THREAD, NotificationRecord, NotificationStore, PersistEvent, RoomUnread, StoreResult,
    UnreadCounts,
};
use myelin_types::StreamPosition;

use crate::events::{EVENT_COLUMNS, event_from_row};
use crate::{PostgresStore, Transaction, get, tx_execute};

/// The position of the user's latest read receipt (public or private) for
/// `thread` ('' for unthreaded), 0 when none; `a` is the push-action row.
const RECEIPT_POSITION: &str = "COALESCE((SELECT MAX(e2.position) FROM receipts r
     JOIN events e2 ON e2.event_id = r.event_id
     WHERE r.room_id = a.room_id AND r.user_id = a.user_id
       AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = {thread}), 0)";

pub(crate) fn receipt_position(thread: &str) -> String {
    RECEIPT_POSITION.replace("{thread}", thread)
}

pub(crate) async fn insert_push_actions(
    tx: &Transaction<'_>,
    event: &PersistEvent,
    position: i64,
) -> StoreResult<()> {
    for action in &event.push_actions {
        tx_execute(
            tx,
            "INSERT INTO event_push_actions (user_id, room_id, position, event_id, thread_id, highlight, sound)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &action.user_id,
                &event.room_id,
                &position,
                &event.event_id,
                &action.thread_id.as_deref().unwrap_or(MAIN_THREAD),
                &action.highlight,
                &action.sound,
            ],
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn unread_counts(&self, user_id: &str, room_id: &str) -> StoreResult<RoomUnread> {
        let sql = format!(
            "SELECT a.thread_id, COUNT(*), COUNT(*) FILTER (WHERE a.highlight)
             FROM event_push_actions a
             WHERE a.user_id = $1 AND a.room_id = $2
               AND a.position > {unthreaded} AND a.position > {threaded}
             GROUP BY a.thread_id",
            unthreaded = receipt_position("''"),
            threaded = receipt_position("a.thread_id"),
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
            "SELECT {EVENT_COLUMNS}, a.highlight,
                    a.position <= GREATEST({unthreaded}, {threaded})
             FROM event_push_actions a JOIN events AS e ON e.position = a.position
             WHERE a.user_id = $1 AND a.position < $2 AND ($3 = FALSE OR a.highlight)
             ORDER BY a.position DESC LIMIT $4",
            unthreaded = receipt_position("''"),
            threaded = receipt_position("a.thread_id"),
        );
        let before = before.map_or(i64::MAX, |position| position.0);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(&sql, &[&user_id, &before, &only_highlight, &limit], |row| {
            Ok(NotificationRecord {
                event: event_from_row(row)?,
                highlight: get(row, 14)?,
                read: get(row, 15)?,
            })
        })
        .await
    }

    async fn unread_rooms(&self, user_id: &str) -> StoreResult<u64> {
        let sql = format!(
            "SELECT COUNT(DISTINCT a.room_id) FROM event_push_actions a
             JOIN current_state cs ON cs.room_id = a.room_id AND cs.event_type = 'm.room.member'
                  AND cs.state_key = a.user_id AND cs.membership = 'join'
             WHERE a.user_id = $1 AND a.position > {unthreaded} AND a.position > {threaded}",
            unthreaded = receipt_position("''"),
            threaded = receipt_position("a.thread_id"),
        );
        let rooms = self
            .query(&sql, &[&user_id], |row| get::<i64>(row, 0))
            .await?;
        Ok(rooms.first().copied().unwrap_or(0).max(0) as u64)
    }
}

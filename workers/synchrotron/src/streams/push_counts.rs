//! Unread notification counts, written by the event-persister with each
//! event and lowered by the user's read receipts. They ride on the other
//! streams: every joined room a response carries (new events, a receipt)
//! gets its counts, and every joined room on a first sync.

use myelin_http::MatrixError;
use myelin_store::UnreadCounts;
use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::{OwnedEventId, OwnedRoomId, UInt};

use super::SyncRequest;
use crate::Synchrotron;

fn count(counts: UnreadCounts) -> UnreadNotificationsCount {
    let mut count = UnreadNotificationsCount::new();
    count.notification_count = Some(UInt::try_from(counts.notifications).unwrap_or(UInt::MAX));
    count.highlight_count = Some(UInt::try_from(counts.highlights).unwrap_or(UInt::MAX));
    count
}

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    response: &mut Response,
) -> Result<(), MatrixError> {
    let rooms: Vec<OwnedRoomId> = if request.since.is_none() {
        joined.to_vec()
    } else {
        response.rooms.join.keys().cloned().collect()
    };
    for room_id in rooms {
        let unread = sync
            .store
            .unread_counts(&request.user.user_id, room_id.as_str())
            .await?;
        let room = response.rooms.join.entry(room_id).or_default();
        if request.filter.unread_thread_notifications {
            room.unread_notifications = count(unread.main);
            room.unread_thread_notifications = unread
                .threads
                .iter()
                .filter_map(|(root, counts)| {
                    Some((OwnedEventId::try_from(root.as_str()).ok()?, count(*counts)))
                })
                .collect();
        } else {
            room.unread_notifications = count(unread.total());
        }
    }
    Ok(())
}

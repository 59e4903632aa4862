//! The receipts stream: `m.receipt` in each joined room's `ephemeral`;
//! private receipts only for their owner.

use std::collections::BTreeMap;

use myelin_http::MatrixError;
use myelin_types::SyncToken;
use ruma::OwnedRoomId;
use ruma::api::client::sync::sync_events::v3::Response;
use serde_json::{Map, Value, json};

use super::{SyncRequest, raw};
use crate::Synchrotron;

pub(crate) const PRIVATE_READ: &str = "m.read.private";

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    joined: &[OwnedRoomId],
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, MatrixError> {
    let since = request.since.map(|token| token.receipts);
    if since == Some(upto.receipts)
        || joined.is_empty()
        || !request.filter.ephemeral.allows_type("m.receipt")
    {
        return Ok(false);
    }
    let rooms: Vec<String> = joined.iter().map(|room| room.to_string()).collect();
    let receipts = sync
        .store
        .receipt_changes(&rooms, since, upto.receipts)
        .await?;
    // room -> event -> type -> user -> {ts, thread_id}
    let mut by_room: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for receipt in &receipts {
        if receipt.receipt_type == PRIVATE_READ && receipt.user_id != request.user.user_id {
            continue;
        }
        let mut detail = json!({"ts": receipt.ts});
        if let Some(thread_id) = &receipt.thread_id {
            detail["thread_id"] = json!(thread_id);
        }
        let content = by_room.entry(receipt.room_id.as_str()).or_default();
        let by_type = content
            .entry(receipt.event_id.clone())
            .or_insert_with(|| json!({}));
        by_type[&receipt.receipt_type][&receipt.user_id] = detail;
    }
    let news = !by_room.is_empty();
    for (room_id, content) in by_room {
        let Some(room_id) = joined.iter().find(|joined| joined.as_str() == room_id) else {
            continue;
        };
        let event = json!({"type": "m.receipt", "content": content});
        response
            .rooms
            .join
            .entry(room_id.clone())
            .or_default()
            .ephemeral
            .events
            .push(raw(&event)?);
    }
    Ok(news)
}

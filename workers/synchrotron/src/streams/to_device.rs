//! The to-device stream: the messages waiting in the syncing device's
//! inbox, oldest first, at most `MAX_PER_RESPONSE` at a time. A message
//! stays in the inbox until a later sync's `since` shows the client has
//! it, so none is lost when a response is, and none is shown twice.
//! Beside them, the device's one-time key counts and unused fallback keys.

use std::collections::BTreeMap;

use myelin_http::MatrixError;
use myelin_types::{StreamPosition, SyncToken};
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::{OneTimeKeyAlgorithm, UInt};
use serde_json::value::RawValue;

use super::SyncRequest;
use crate::Synchrotron;

/// Most to-device messages in one response; the rest come in the next.
const MAX_PER_RESPONSE: usize = 100;

impl Synchrotron {
    /// Drops the messages the client acknowledged by syncing from `since`
    /// (checked by a read first, so most syncs write nothing).
    pub(crate) async fn acknowledge_to_device(
        &self,
        request: &SyncRequest,
    ) -> Result<(), MatrixError> {
        let Some(since) = request.since.map(|token| token.to_device) else {
            return Ok(());
        };
        let user = &request.user;
        let acknowledged = self
            .store
            .to_device_messages(
                &user.user_id,
                &user.device_id,
                StreamPosition::ZERO,
                since,
                1,
            )
            .await?;
        if !acknowledged.is_empty() {
            self.store
                .acknowledge_to_device(&user.user_id, &user.device_id, since)
                .await?;
        }
        Ok(())
    }
}

pub(super) async fn fill(
    sync: &Synchrotron,
    request: &SyncRequest,
    upto: SyncToken,
    response: &mut Response,
) -> Result<bool, MatrixError> {
    let since = request
        .since
        .map_or(StreamPosition::ZERO, |token| token.to_device);
    if since >= upto.to_device {
        return Ok(false);
    }
    let user = &request.user;
    let messages = sync
        .store
        .to_device_messages(
            &user.user_id,
            &user.device_id,
            since,
            upto.to_device,
            MAX_PER_RESPONSE,
        )
        .await?;
    for message in &messages {
        let content = RawValue::from_string(message.content.clone())
            .map_err(|error| MatrixError::internal(error.to_string()))?;
        let event = serde_json::json!({
            "sender": message.sender,
            "type": message.event_type,
            "content": content,
        });
        response.to_device.events.push(super::raw(&event)?);
    }
    // A full page: the next sync goes on from the last message shown.
    if messages.len() == MAX_PER_RESPONSE
        && let Some(last) = messages.last()
    {
        let next = SyncToken {
            to_device: last.position,
            ..upto
        };
        response.next_batch = next.to_string();
    }
    Ok(!messages.is_empty())
}

/// The device's unclaimed one-time keys and unused fallback key types, so
/// its client knows when to upload more.
pub(super) async fn fill_key_counts(
    sync: &Synchrotron,
    request: &SyncRequest,
    response: &mut Response,
) -> Result<(), MatrixError> {
    let user = &request.user;
    let counts = sync
        .store
        .one_time_key_counts(&user.user_id, &user.device_id)
        .await?;
    let mut by_algorithm: BTreeMap<OneTimeKeyAlgorithm, UInt> =
        BTreeMap::from([(OneTimeKeyAlgorithm::SignedCurve25519, UInt::MIN)]);
    for (algorithm, count) in counts {
        by_algorithm.insert(
            OneTimeKeyAlgorithm::from(algorithm.as_str()),
            UInt::try_from(count).unwrap_or(UInt::MAX),
        );
    }
    response.device_one_time_keys_count = by_algorithm;
    response.device_unused_fallback_key_types = Some(
        sync.store
            .unused_fallback_algorithms(&user.user_id, &user.device_id)
            .await?
            .iter()
            .map(|algorithm| OneTimeKeyAlgorithm::from(algorithm.as_str()))
            .collect(),
    );
    Ok(())
}

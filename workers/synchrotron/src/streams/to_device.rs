//! The to-device stream: the messages waiting in the syncing device's
//! inbox, oldest first, at most `MAX_PER_RESPONSE` at a time. A message
//! stays in the inbox until a later sync's `since` shows the client has
//! it, so none is lost when a response is, and none is shown twice.
//! Beside them, the device's one-time key counts and unused fallback keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use myelin_http::MatrixError;
use myelin_store::{Store, ToDeviceAck};
use myelin_types::{StreamPosition, SyncToken};
use ruma::api::client::sync::sync_events::v3::Response;
use ruma::{OneTimeKeyAlgorithm, UInt};
use serde_json::value::RawValue;

use super::SyncRequest;
use crate::Synchrotron;

/// Most to-device messages in one response; the rest come in the next.
const MAX_PER_RESPONSE: usize = 100;

/// Acknowledged inboxes waiting to be emptied, and how far each device's
/// inbox was emptied last. A sync only notes its `since`; a tick empties
/// every noted inbox in one write, so syncs never wait on the writer.
#[derive(Default)]
pub(crate) struct ToDeviceAcks {
    pending: Mutex<HashMap<(String, String), StreamPosition>>,
    emptied: Mutex<HashMap<(String, String), StreamPosition>>,
}

/// Devices whose last emptying is remembered; past this the memory starts
/// over (at worst an inbox is emptied again, which is harmless).
const MAX_REMEMBERED: usize = 100_000;
/// Inboxes emptied in one write.
const ACK_BATCH: usize = 500;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ToDeviceAcks {
    /// The device's sync came with `since`: what is below it arrived.
    pub(crate) fn note(&self, user_id: &str, device_id: &str, since: StreamPosition) {
        let key = (user_id.to_owned(), device_id.to_owned());
        if since <= StreamPosition::ZERO
            || lock(&self.emptied)
                .get(&key)
                .is_some_and(|done| *done >= since)
        {
            return;
        }
        let mut pending = lock(&self.pending);
        let entry = pending.entry(key).or_insert(since);
        *entry = (*entry).max(since);
    }

    /// Empties the noted inboxes.
    pub(crate) async fn flush(&self, store: &dyn Store) {
        let noted: Vec<ToDeviceAck> = std::mem::take(&mut *lock(&self.pending))
            .into_iter()
            .map(|((user_id, device_id), upto)| ToDeviceAck {
                user_id,
                device_id,
                upto,
            })
            .collect();
        for batch in noted.chunks(ACK_BATCH) {
            if let Err(error) = store.acknowledge_to_device(batch).await {
                tracing::warn!(%error, "cannot empty acknowledged to-device inboxes");
                continue;
            }
            let mut emptied = lock(&self.emptied);
            if emptied.len() >= MAX_REMEMBERED {
                emptied.clear();
            }
            for ack in batch {
                emptied.insert((ack.user_id.clone(), ack.device_id.clone()), ack.upto);
            }
        }
    }
}

impl Synchrotron {
    /// Notes the messages the client acknowledged by syncing from `since`.
    pub(crate) fn acknowledge_to_device(&self, request: &SyncRequest) {
        if let Some(since) = request.since {
            let user = &request.user;
            self.to_device_acks
                .note(&user.user_id, &user.device_id, since.to_device);
        }
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

//! Other servers telling of their users' device and cross-signing key
//! changes (`m.device_list_update`, `m.signing_key_update`): the kept list
//! moves on when an update follows it, and is fetched whole in the
//! background when one was missed. Either way local users sharing a room
//! see the user in their sync's `device_lists.changed`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use myelin_bus::topics;
use myelin_federation::remote_devices::{self, UpdateOutcome};
use ruma::api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent};
use ruma::{OwnedUserId, ServerName, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::FederationApi;

/// Lists fetched at once per replica.
const RESYNCS_AT_ONCE: usize = 4;
/// Users waiting for a fetch at most; past it an update only drops the
/// kept list, and the next key query fetches it.
const MAX_RESYNCS_WAITING: usize = 1000;

/// The most times one user's list is fetched again in a row because
/// updates kept coming while it was fetched.
const MAX_FETCHES_IN_A_ROW: usize = 3;

/// The fetches of whole lists under way in this replica: for each user,
/// whether an update came while the fetch ran (its answer may predate the
/// update, so the list is fetched once more).
pub(crate) struct Resyncs {
    waiting: Mutex<HashMap<OwnedUserId, bool>>,
    turns: Arc<tokio::sync::Semaphore>,
}

impl Default for Resyncs {
    fn default() -> Self {
        Resyncs {
            waiting: Mutex::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(RESYNCS_AT_ONCE)),
        }
    }
}

impl Resyncs {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedUserId, bool>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The user an update is about, read before the rest of it: an update
/// that does not parse still tells that the user's devices changed.
#[derive(Deserialize)]
struct UpdateAbout {
    user_id: OwnedUserId,
}

impl FederationApi {
    pub(crate) async fn device_list_edu(
        self: &Arc<Self>,
        origin: &ServerName,
        content: &RawValue,
    ) -> Result<(), String> {
        let about: UpdateAbout = serde_json::from_str(content.get())
            .map_err(|error| format!("unreadable device list update: {error}"))?;
        let user_id = about.user_id;
        if user_id.server_name() != origin {
            return Err("a device list update for a user not of the origin".to_owned());
        }
        let outcome = match serde_json::from_str::<DeviceListUpdateContent>(content.get()) {
            Ok(update) => remote_devices::apply_update(self.store.as_ref(), &update).await,
            Err(_) => self
                .store
                .forget_remote_device_list(user_id.as_str())
                .await
                .map(|()| UpdateOutcome::Behind),
        }
        .map_err(|error| error.to_string())?;
        match outcome {
            UpdateOutcome::Seen => return Ok(()),
            UpdateOutcome::Applied => {}
            UpdateOutcome::Behind => self.resync_later(&user_id).await,
        }
        self.device_list_changed(&user_id).await
    }

    pub(crate) async fn signing_key_edu(
        self: &Arc<Self>,
        origin: &ServerName,
        update: SigningKeyUpdateContent,
    ) -> Result<(), String> {
        if update.user_id.server_name() != origin {
            return Err("a signing key update for a user not of the origin".to_owned());
        }
        let applied = remote_devices::apply_signing_keys(self.store.as_ref(), &update)
            .await
            .map_err(|error| error.to_string())?;
        if !applied {
            // No list to apply them to (or one that is fetched meanwhile):
            // the next one fetched has them.
            self.resync_later(&update.user_id).await;
        }
        self.device_list_changed(&update.user_id).await
    }

    /// Local users sharing a room with `user_id` see the change in their
    /// sync and ask for the keys again.
    async fn device_list_changed(&self, user_id: &UserId) -> Result<(), String> {
        self.store
            .note_remote_device_list_change(user_id.as_str())
            .await
            .map_err(|error| error.to_string())?;
        let change = topics::DeviceListChanged {
            user_id: user_id.to_string(),
        };
        topics::DEVICE_LISTS
            .announce(self.bus.as_ref(), &change)
            .await
            .map_err(|error| error.to_string())
    }

    /// Fetches the user's list whole in the background, if they share a
    /// room with a user here; if a fetch for them is under way, it runs
    /// once more when done.
    async fn resync_later(self: &Arc<Self>, user_id: &UserId) {
        match self
            .store
            .shares_room_with_local_user(user_id.as_str())
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, %user_id, "cannot tell whether a room is shared");
                return;
            }
        }
        {
            let mut waiting = self.resyncs.waiting();
            if let Some(again) = waiting.get_mut(user_id) {
                *again = true;
                return;
            }
            if waiting.len() >= MAX_RESYNCS_WAITING {
                return;
            }
            waiting.insert(user_id.to_owned(), false);
        }
        let api = Arc::clone(self);
        let user_id = user_id.to_owned();
        tokio::spawn(async move {
            for fetch in 1..=MAX_FETCHES_IN_A_ROW {
                let fetched = match Arc::clone(&api.resyncs.turns).acquire_owned().await {
                    Ok(_turn) => {
                        remote_devices::resync(&api.federation, api.store.as_ref(), &user_id).await
                    }
                    Err(_) => break,
                };
                if let Err(error) = fetched {
                    tracing::info!(%error, %user_id, "cannot fetch a device list");
                    break;
                }
                // Whether to go again is read and the user let go under
                // one lock, so an update arriving now is never missed.
                let mut waiting = api.resyncs.waiting();
                match waiting.get_mut(&user_id) {
                    Some(again) if *again && fetch < MAX_FETCHES_IN_A_ROW => *again = false,
                    _ => {
                        waiting.remove(&user_id);
                        return;
                    }
                }
            }
            api.resyncs.waiting().remove(&user_id);
        });
    }
}

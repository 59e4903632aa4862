//! Key queries for other servers' users answered from the device lists
//! kept here (see `myelin_federation::remote_devices`): a user whose list
//! is kept is answered from it, even while their server is down; one who
//! shares a room with a user here has their list fetched whole, and kept
//! from then on. The rest are asked of their servers as before.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use myelin_federation::FederationError;
use myelin_federation::remote_devices::{self, DeviceList, ResyncError};
use myelin_http::MatrixError;
use ruma::api::client::keys::get_keys;
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};

use crate::ClientApi;

/// Lists one query fetches whole at most; the users past it are asked of
/// their servers in one request each.
const MAX_FETCHED_PER_QUERY: usize = 100;
/// Users one query checks for a shared room at most.
const MAX_ROOM_CHECKS_PER_QUERY: usize = 200;
/// Kept lists one query reads, in bytes of JSON, about at most.
const MAX_KEPT_BYTES_PER_QUERY: usize = 16 << 20;
/// Lists fetched at the same time.
const FETCHED_AT_ONCE: usize = 20;

/// Users asked about, by server, with the devices asked (all when none).
pub(super) type Asked = BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>>;

fn answer_from(
    response: &mut get_keys::v3::Response,
    user_id: OwnedUserId,
    devices: &[OwnedDeviceId],
    list: DeviceList,
) {
    response
        .device_keys
        .insert(user_id.clone(), list.device_keys(devices));
    if let Some(key) = list.master_key {
        response.master_keys.insert(user_id.clone(), key);
    }
    if let Some(key) = list.self_signing_key {
        response.self_signing_keys.insert(user_id, key);
    }
}

/// Answers what it can of `asked` from kept lists, or by fetching lists
/// whole; gives back what is left to ask of the servers. A server that
/// could not be reached for a list is named in `failures` and not asked
/// again.
pub(super) async fn answer_known_users(
    api: &Arc<ClientApi>,
    mut asked: Asked,
    wait: std::time::Duration,
    response: &mut get_keys::v3::Response,
) -> Result<Asked, MatrixError> {
    let users: Vec<String> = asked
        .values()
        .flat_map(|users| users.keys().map(ToString::to_string))
        .collect();
    let mut kept =
        remote_devices::kept_lists(api.store.as_ref(), &users, MAX_KEPT_BYTES_PER_QUERY).await?;
    let mut to_fetch = Vec::new();
    let mut checked = 0;
    for users in asked.values_mut() {
        let mut left = BTreeMap::new();
        for (user_id, devices) in std::mem::take(users) {
            if let Some(list) = kept.remove(user_id.as_str()) {
                answer_from(response, user_id, &devices, list);
                continue;
            }
            let fetch =
                to_fetch.len() < MAX_FETCHED_PER_QUERY && checked < MAX_ROOM_CHECKS_PER_QUERY && {
                    checked += 1;
                    api.store
                        .shares_room_with_local_user(user_id.as_str())
                        .await?
                };
            if fetch {
                to_fetch.push((user_id, devices));
            } else {
                left.insert(user_id, devices);
            }
        }
        *users = left;
    }
    let fetches = to_fetch.into_iter().map(|(user_id, devices)| {
        let api = Arc::clone(api);
        async move {
            let fetched = tokio::time::timeout(
                wait,
                remote_devices::resync(&api.federation, api.store.as_ref(), &user_id),
            )
            .await;
            (user_id, devices, fetched)
        }
    });
    let fetched: Vec<_> = futures::stream::iter(fetches)
        .buffer_unordered(FETCHED_AT_ONCE)
        .collect()
        .await;
    for (user_id, devices, fetched) in fetched {
        let server = user_id.server_name().to_owned();
        let error = match fetched {
            Ok(Ok(list)) => {
                answer_from(response, user_id, &devices, list);
                continue;
            }
            Ok(Err(ResyncError::Federation(error))) => error,
            Err(_) => FederationError::Unreachable(format!("no answer within {wait:?}")),
            // An answer that did not check out, or a store failure: the
            // server is asked the usual way.
            Ok(Err(error)) => {
                tracing::info!(%error, %user_id, "cannot fetch a device list");
                asked.entry(server).or_default().insert(user_id, devices);
                continue;
            }
        };
        response
            .failures
            .insert(server.to_string(), super::keys::failure(&error));
    }
    asked.retain(|server, users| {
        !users.is_empty() && !response.failures.contains_key(server.as_str())
    });
    Ok(asked)
}

//! `/user/keys/query` and `/user/keys/claim`: other servers asking for the
//! encryption keys of this server's users.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_federation::user_keys::{
    Asker, MAX_DEVICES_PER_REQUEST, claim_user_keys, devices_asked, user_keys,
};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::KeyClaim;
use ruma::api::federation::device::get_devices;
use ruma::api::federation::keys::{claim_keys, get_keys};

use crate::FederationApi;

pub(crate) async fn query(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_keys::v1::Request,
) -> Result<get_keys::v1::Response, MatrixError> {
    if devices_asked(&request.device_keys) > MAX_DEVICES_PER_REQUEST {
        return Err(MatrixError::too_large("Too many users or devices asked"));
    }
    // Only this server's users are answered for.
    let local: BTreeMap<_, _> = request
        .device_keys
        .into_iter()
        .filter(|(user_id, _)| api.is_local(user_id))
        .collect();
    let keys = user_keys(api.store.as_ref(), &local, Asker::server(&api.config)).await?;
    let mut response = get_keys::v1::Response::new(keys.device_keys);
    response.master_keys = keys.master_keys;
    response.self_signing_keys = keys.self_signing_keys;
    Ok(response)
}

pub(crate) async fn claim(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: claim_keys::v1::Request,
) -> Result<claim_keys::v1::Response, MatrixError> {
    let asked: usize = request.one_time_keys.values().map(BTreeMap::len).sum();
    if asked > MAX_DEVICES_PER_REQUEST {
        return Err(MatrixError::too_large("Too many devices asked"));
    }
    let claims: Vec<KeyClaim> = request
        .one_time_keys
        .iter()
        .filter(|(user_id, _)| api.is_local(user_id))
        .flat_map(|(user_id, devices)| {
            devices.iter().map(move |(device_id, algorithm)| KeyClaim {
                user_id: user_id.to_string(),
                device_id: device_id.to_string(),
                algorithm: algorithm.as_str().to_owned(),
            })
        })
        .collect();
    let claimed = claim_user_keys(api.store.as_ref(), &claims).await?;
    Ok(claim_keys::v1::Response::new(claimed))
}

/// `GET /user/devices/{userId}`: a local user's devices with their keys,
/// for another server tracking that user's device list.
pub(crate) async fn devices(
    api: Arc<FederationApi>,
    _: RequestContext,
    request: get_devices::v1::Request,
) -> Result<get_devices::v1::Response, MatrixError> {
    if !api.is_local(&request.user_id) {
        return Err(MatrixError::invalid_param(
            "The user is not hosted on this server",
        ));
    }
    // The user's latest change in the chain their `m.device_list_update`s
    // cite, read before the keys: a change committed in between is in the
    // answer and sent again, never reported without being in it.
    let stream_id = api
        .store
        .device_list_chain_position(request.user_id.as_str(), None)
        .await?
        .map_or(0, |position| position.0);
    let asked = BTreeMap::from([(request.user_id.clone(), Vec::new())]);
    let mut keys = user_keys(api.store.as_ref(), &asked, Asker::server(&api.config)).await?;
    let mut response = get_devices::v1::Response::new(
        request.user_id.clone(),
        ruma::UInt::try_from(stream_id.max(0)).unwrap_or_default(),
    );
    response.devices = keys
        .device_keys
        .remove(&request.user_id)
        .unwrap_or_default()
        .into_iter()
        .map(|(device_id, device_keys)| {
            let name = device_keys
                .get_field::<serde_json::Value>("unsigned")
                .ok()
                .flatten()
                .and_then(|unsigned| unsigned["device_display_name"].as_str().map(str::to_owned));
            let mut device = get_devices::v1::UserDevice::new(device_id, device_keys);
            device.device_display_name = name;
            device
        })
        .collect();
    response.master_key = keys.master_keys.remove(&request.user_id);
    response.self_signing_key = keys.self_signing_keys.remove(&request.user_id);
    Ok(response)
}

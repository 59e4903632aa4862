//! `/user/keys/query` and `/user/keys/claim`: other servers asking for the
//! encryption keys of this server's users.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_federation::user_keys::{
    MAX_DEVICES_PER_REQUEST, claim_user_keys, devices_asked, user_keys,
};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::KeyClaim;
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
    let keys = user_keys(api.store.as_ref(), &local, None).await?;
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

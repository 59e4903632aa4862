//! `GET /devices`, `GET|PUT|DELETE /devices/{deviceId}` and
//! `POST /delete_devices`: the user's own devices.

use std::sync::Arc;

use myelin_http::{MatrixError, Router};
use myelin_store::{Device, StoreError};
use ruma::api::client::device::{
    delete_device, delete_devices, get_device, get_devices, update_device,
};
use serde_json::{Map, Value, json};

use crate::ClientApi;
use crate::identifier_limits::refuse_nul;

pub(crate) fn routes(api: &Arc<ClientApi>, router: &mut Router) {
    let a = Arc::clone(api);
    router.route_json::<get_devices::v3::Request, _, _>(move |context, _| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let devices: Vec<Value> = api
                .store
                .devices(&user.user_id)
                .await?
                .iter()
                .map(device_json)
                .collect();
            Ok(json!({"devices": devices}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<get_device::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let device = api
                .store
                .device(&user.user_id, request.device_id.as_str())
                .await?
                .ok_or_else(unknown_device)?;
            Ok(device_json(&device))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<update_device::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            let device_id = request.device_id.as_str();
            let Some(name) = request.display_name else {
                // No new name: the device keeps its own, but must exist.
                api.store
                    .device(&user.user_id, device_id)
                    .await?
                    .ok_or_else(unknown_device)?;
                return Ok(json!({}));
            };
            refuse_nul("The device name", &name)?;
            api.store
                .rename_device(&user.user_id, device_id, Some(&name))
                .await
                .map_err(|error| match error {
                    StoreError::NotFound => unknown_device(),
                    other => other.into(),
                })?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<delete_device::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            api.require_password_auth(&user.user_id, request.auth.as_ref())
                .await?;
            let deleted = [request.device_id.to_string()];
            api.store.delete_devices(&user.user_id, &deleted).await?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({}))
        }
    });
    let a = Arc::clone(api);
    router.route_json::<delete_devices::v3::Request, _, _>(move |context, request| {
        let api = Arc::clone(&a);
        async move {
            let user = context.user()?;
            api.require_password_auth(&user.user_id, request.auth.as_ref())
                .await?;
            let device_ids: Vec<String> = request.devices.iter().map(ToString::to_string).collect();
            api.store.delete_devices(&user.user_id, &device_ids).await?;
            api.device_list_changed(&user.user_id).await;
            Ok(json!({}))
        }
    });
}

fn unknown_device() -> MatrixError {
    MatrixError::not_found("The current user has no device with the given ID")
}

/// The spec's `Device`: `device_id` always, the rest when known.
fn device_json(device: &Device) -> Value {
    let mut object = Map::new();
    object.insert("device_id".to_owned(), json!(device.device_id));
    if let Some(name) = &device.display_name {
        object.insert("display_name".to_owned(), json!(name));
    }
    if let Some(ip) = &device.last_seen_ip {
        object.insert("last_seen_ip".to_owned(), json!(ip));
    }
    if let Some(ts) = device.last_seen_ts {
        object.insert("last_seen_ts".to_owned(), json!(ts));
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_json_omits_unknown_fields() {
        let mut device = Device {
            user_id: "@a:hs".to_owned(),
            device_id: "ABC".to_owned(),
            display_name: None,
            last_seen_ts: None,
            last_seen_ip: None,
        };
        assert_eq!(device_json(&device), json!({"device_id": "ABC"}));
        device.display_name = Some("phone".to_owned());
        device.last_seen_ts = Some(5);
        device.last_seen_ip = Some("1.2.3.4".to_owned());
        assert_eq!(
            device_json(&device),
            json!({"device_id": "ABC", "display_name": "phone", "last_seen_ip": "1.2.3.4", "last_seen_ts": 5})
        );
    }
}

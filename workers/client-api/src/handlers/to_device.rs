//! `PUT /sendToDevice/{eventType}/{txnId}`: messages straight to devices,
//! queued in each device's inbox for its next sync.

use std::collections::BTreeSet;
use std::sync::Arc;

use myelin_bus::topics::{self, ToDeviceQueued};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::{NewToDevice, ToDeviceSend};
use myelin_types::now_millis;
use ruma::api::client::to_device::send_event_to_device;
use ruma::to_device::DeviceIdOrAllDevices;

use crate::ClientApi;
use crate::identifier_limits::{check_event_key, check_txn_id};

/// Most bytes of one message's content: the size limit of an event.
const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most devices one send reaches.
const MAX_MESSAGES: usize = 10_000;

pub(crate) async fn send(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: send_event_to_device::v3::Request,
) -> Result<send_event_to_device::v3::Response, MatrixError> {
    let user = context.user()?;
    let event_type = request.event_type.to_string();
    check_event_key("The event type", &event_type)?;
    check_txn_id(request.txn_id.as_str())?;
    let mut messages = Vec::new();
    let mut recipients = BTreeSet::new();
    for (user_id, by_device) in &request.messages {
        // Other servers' users wait for federation; unknown users and
        // devices are dropped without a word, as the spec has it.
        if user_id.server_name().as_str() != api.server_name {
            continue;
        }
        let devices: Vec<String> = api
            .store
            .devices(user_id.as_str())
            .await?
            .into_iter()
            .map(|device| device.device_id)
            .collect();
        for (target, content) in by_device {
            let content = content.json().get();
            if content.len() > MAX_CONTENT_BYTES {
                return Err(MatrixError::too_large(format!(
                    "A to-device message is over {MAX_CONTENT_BYTES} bytes"
                )));
            }
            if !content.trim_start().starts_with('{') {
                return Err(MatrixError::bad_json(
                    "A to-device message's content must be an object",
                ));
            }
            let targets: Vec<&String> = match target {
                DeviceIdOrAllDevices::AllDevices => devices.iter().collect(),
                DeviceIdOrAllDevices::DeviceId(device_id) => devices
                    .iter()
                    .filter(|known| known.as_str() == device_id.as_str())
                    .collect(),
            };
            for device_id in targets {
                messages.push(NewToDevice {
                    user_id: user_id.to_string(),
                    device_id: device_id.clone(),
                    content: content.to_owned(),
                });
                recipients.insert(user_id.to_string());
            }
            if messages.len() > MAX_MESSAGES {
                return Err(MatrixError::too_large(format!(
                    "One send reaches at most {MAX_MESSAGES} devices"
                )));
            }
        }
    }
    let queued = api
        .store
        .send_to_device(ToDeviceSend {
            sender: user.user_id.clone(),
            sender_device: user.device_id.clone(),
            txn_id: request.txn_id.to_string(),
            event_type,
            messages,
            ts: now_millis(),
        })
        .await?;
    if let Some(position) = queued {
        for user_id in recipients {
            let queued = ToDeviceQueued { user_id, position };
            if let Err(error) = topics::TO_DEVICE.announce(api.bus.as_ref(), &queued).await {
                tracing::warn!(%error, "cannot announce to-device messages");
            }
        }
    }
    Ok(send_event_to_device::v3::Response::new())
}

//! `PUT /sendToDevice/{eventType}/{txnId}`: messages straight to devices,
//! queued in each device's inbox for its next sync, or for other servers'
//! users in the federation queue, one EDU per server.

use std::collections::BTreeMap;
use std::sync::Arc;

use myelin_bus::topics;
use myelin_http::{MatrixError, RequestContext};
use myelin_store::{QueuedEdu, ToDeviceSend};
use myelin_types::{Partition, now_millis};
use ruma::api::client::to_device::send_event_to_device;
use serde_json::{Value, json};

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
    // Other servers' users: one EDU per server, queued for the sender.
    let mut remote: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    for (user_id, by_device) in &request.messages {
        if user_id.server_name().as_str() != api.server_name {
            let mut devices = serde_json::Map::new();
            for (target, content) in by_device {
                let content = content.json().get();
                if content.len() > MAX_CONTENT_BYTES {
                    return Err(MatrixError::too_large(format!(
                        "A to-device message is over {MAX_CONTENT_BYTES} bytes"
                    )));
                }
                let content: Value = serde_json::from_str(content)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        MatrixError::bad_json("A to-device message's content must be an object")
                    })?;
                devices.insert(target.to_string(), content);
            }
            remote
                .entry(user_id.server_name().to_string())
                .or_default()
                .insert(user_id.to_string(), Value::Object(devices));
            continue;
        }
        // Unknown users and devices are dropped without a word, as the
        // spec has it.
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
            messages.extend(myelin_process::addressed_messages(
                user_id.as_str(),
                target,
                &devices,
                content,
            ));
            if messages.len() > MAX_MESSAGES {
                return Err(MatrixError::too_large(format!(
                    "One send reaches at most {MAX_MESSAGES} devices"
                )));
            }
        }
    }
    myelin_process::queue_to_device(
        api.store.as_ref(),
        api.bus.as_ref(),
        ToDeviceSend {
            sender: user.user_id.clone(),
            sender_device: user.device_id.clone(),
            txn_id: request.txn_id.to_string(),
            event_type,
            messages,
            ts: now_millis(),
        },
    )
    .await?;
    if !remote.is_empty() {
        // The message ID names this send, so a retry is recognised remotely.
        let message_id = format!("{}:{}", user.device_id, request.txn_id);
        let edus: Vec<QueuedEdu> = remote
            .into_iter()
            .map(|(destination, messages)| QueuedEdu {
                partition: Partition::of_server(&destination).0,
                edu_json: json!({
                    "edu_type": "m.direct_to_device",
                    "content": {
                        "sender": user.user_id,
                        "type": request.event_type.to_string(),
                        "message_id": message_id,
                        "messages": messages,
                    },
                })
                .to_string(),
                destination,
            })
            .collect();
        let destinations = edus.iter().map(|edu| edu.destination.clone()).collect();
        api.store.enqueue_edus(edus).await?;
        let queued = topics::FederationQueued { destinations };
        if let Err(error) = topics::FEDERATION_QUEUED
            .announce(api.bus.as_ref(), &queued)
            .await
        {
            tracing::warn!(%error, "cannot announce queued to-device messages");
        }
    }
    Ok(send_event_to_device::v3::Response::new())
}

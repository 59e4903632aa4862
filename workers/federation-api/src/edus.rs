//! EDUs of a transaction: typing notices, read receipts, presence,
//! to-device messages and device-list changes (see `device_lists`) of the
//! sending server's users, each into its stream as a local one would go.
//! An EDU that does not check out is dropped alone; the rest of the
//! transaction goes on.

use std::sync::Arc;

use myelin_bus::topics::{self, PresenceChanged, ReceiptChanged, TypingChanged};
use myelin_store::{NewReceipt, PresenceUpdate, ToDeviceSend};
use myelin_types::now_millis;
use ruma::api::federation::transactions::edu::{
    DirectDeviceContent, Edu, ReceiptContent, TypingContent,
};
use ruma::events::receipt::ReceiptThread;
use ruma::serde::Raw;
use ruma::{OwnedUserId, ServerName, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::FederationApi;

/// How long a typing notice from another server runs (it renews it).
const REMOTE_TYPING_MS: i64 = 30_000;
/// The largest to-device message content taken.
const MAX_TO_DEVICE_BYTES: usize = 65_536;
/// The most presence updates taken from one EDU.
const MAX_PRESENCE_UPDATES: usize = 1000;
/// The most devices one to-device EDU reaches.
const MAX_TO_DEVICE_MESSAGES: usize = 10_000;

/// An EDU before its content is read: its type decides how.
#[derive(Deserialize)]
struct RawEdu {
    edu_type: String,
    content: Box<RawValue>,
}

fn parse<T: serde::de::DeserializeOwned>(content: &RawValue) -> Result<T, String> {
    serde_json::from_str(content.get()).map_err(|error| format!("unreadable EDU content: {error}"))
}

/// `m.presence`, read leniently: servers leave out `last_active_ago`.
#[derive(Deserialize)]
struct RemotePresence {
    push: Vec<RemotePresenceUpdate>,
}

#[derive(Deserialize)]
struct RemotePresenceUpdate {
    user_id: OwnedUserId,
    presence: String,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    last_active_ago: Option<u64>,
}

impl FederationApi {
    pub(crate) async fn accept_edus(self: &Arc<Self>, origin: &ServerName, edus: &[Raw<Edu>]) {
        for raw in edus {
            let outcome = match serde_json::from_str::<RawEdu>(raw.json().get()) {
                Ok(edu) => self.accept_edu(origin, edu).await,
                Err(error) => Err(format!("unreadable EDU: {error}")),
            };
            if let Err(why) = outcome {
                tracing::debug!(%origin, %why, "dropped an EDU");
            }
        }
    }

    async fn accept_edu(self: &Arc<Self>, origin: &ServerName, edu: RawEdu) -> Result<(), String> {
        let content = &edu.content;
        match edu.edu_type.as_str() {
            "m.typing" => self.typing_edu(origin, parse(content)?).await,
            "m.receipt" => self.receipt_edu(origin, parse(content)?).await,
            "m.presence" => self.presence_edu(origin, parse(content)?).await,
            "m.direct_to_device" => self.to_device_edu(origin, parse(content)?).await,
            "m.device_list_update" => self.device_list_edu(origin, content).await,
            // Servers send both names while the unprefixed one spreads.
            "m.signing_key_update" | "org.matrix.signing_key_update" => {
                self.signing_key_edu(origin, parse(content)?).await
            }
            _ => Ok(()),
        }
    }

    /// Whether `user_id` is of the origin and joined to the room.
    async fn member_from(
        &self,
        origin: &ServerName,
        user_id: &UserId,
        room_id: &str,
    ) -> Result<bool, String> {
        if user_id.server_name() != origin
            || myelin_federation::server_acl::require_acl(
                self.store.as_ref(),
                room_id,
                origin.as_str(),
            )
            .await
            .is_err()
        {
            return Ok(false);
        }
        let membership = self
            .store
            .state_event(room_id, "m.room.member", user_id.as_str())
            .await
            .map_err(|error| error.to_string())?
            .and_then(|event| myelin_room::content_text(&event.pdu_json, "membership"));
        Ok(membership.as_deref() == Some("join"))
    }

    async fn typing_edu(&self, origin: &ServerName, typing: TypingContent) -> Result<(), String> {
        let room_id = typing.room_id.as_str();
        if !self.member_from(origin, &typing.user_id, room_id).await? {
            return Err("typing of a user not of the origin or not in the room".to_owned());
        }
        let until_ms = typing.typing.then(|| now_millis() + REMOTE_TYPING_MS);
        self.store
            .set_typing(room_id, typing.user_id.as_str(), until_ms)
            .await
            .map_err(|error| error.to_string())?;
        let change = TypingChanged {
            room_id: room_id.to_owned(),
            user_id: typing.user_id.to_string(),
            until_ms,
        };
        topics::TYPING
            .announce(self.bus.as_ref(), &change)
            .await
            .map_err(|error| error.to_string())
    }

    async fn receipt_edu(
        &self,
        origin: &ServerName,
        content: ReceiptContent,
    ) -> Result<(), String> {
        for (room_id, receipts) in content.receipts {
            for (user_id, receipt) in receipts.read {
                if !self.member_from(origin, &user_id, room_id.as_str()).await? {
                    continue;
                }
                let Some(event_id) = receipt.event_ids.last() else {
                    continue;
                };
                let thread_id = match &receipt.data.thread {
                    ReceiptThread::Main => Some("main".to_owned()),
                    ReceiptThread::Thread(root) => Some(root.to_string()),
                    _ => None,
                };
                let position = self
                    .store
                    .set_receipt(NewReceipt {
                        room_id: room_id.to_string(),
                        receipt_type: "m.read".to_owned(),
                        user_id: user_id.to_string(),
                        thread_id,
                        event_id: event_id.to_string(),
                        ts: receipt
                            .data
                            .ts
                            .map_or_else(now_millis, |ts| i64::from(ts.get())),
                    })
                    .await
                    .map_err(|error| error.to_string())?;
                let change = ReceiptChanged {
                    room_id: room_id.to_string(),
                    user_id: user_id.to_string(),
                    private: false,
                    position,
                };
                if let Err(error) = topics::RECEIPTS.announce(self.bus.as_ref(), &change).await {
                    tracing::warn!(%error, "cannot announce a receipt");
                }
            }
        }
        Ok(())
    }

    async fn presence_edu(
        &self,
        origin: &ServerName,
        content: RemotePresence,
    ) -> Result<(), String> {
        for update in content.push.into_iter().take(MAX_PRESENCE_UPDATES) {
            if update.user_id.server_name() != origin
                || !matches!(
                    update.presence.as_str(),
                    "online" | "unavailable" | "offline"
                )
            {
                continue;
            }
            let ago = i64::try_from(update.last_active_ago.unwrap_or(0)).unwrap_or(i64::MAX);
            let position = self
                .store
                .set_presence(PresenceUpdate {
                    user_id: update.user_id.to_string(),
                    state: update.presence,
                    status_msg: Some(update.status_msg),
                    last_active_ts: now_millis().saturating_sub(ago),
                })
                .await
                .map_err(|error| error.to_string())?;
            let change = PresenceChanged {
                user_id: update.user_id.to_string(),
                position,
            };
            if let Err(error) = topics::PRESENCE.announce(self.bus.as_ref(), &change).await {
                tracing::warn!(%error, "cannot announce presence");
            }
        }
        Ok(())
    }

    async fn to_device_edu(
        &self,
        origin: &ServerName,
        content: DirectDeviceContent,
    ) -> Result<(), String> {
        if content.sender.server_name() != origin {
            return Err("to-device messages from a user not of the origin".to_owned());
        }
        let mut messages = Vec::new();
        for (user_id, by_device) in &content.messages {
            if !self.is_local(user_id) {
                continue;
            }
            let devices: Vec<String> = self
                .store
                .devices(user_id.as_str())
                .await
                .map_err(|error| error.to_string())?
                .into_iter()
                .map(|device| device.device_id)
                .collect();
            for (target, message) in by_device {
                let json = message.json().get();
                if json.len() > MAX_TO_DEVICE_BYTES || !json.trim_start().starts_with('{') {
                    continue;
                }
                messages.extend(myelin_process::addressed_messages(
                    user_id.as_str(),
                    target,
                    &devices,
                    json,
                ));
            }
            if messages.len() > MAX_TO_DEVICE_MESSAGES {
                return Err("a to-device EDU reaching too many devices".to_owned());
            }
        }
        // The store takes each sender's message ID once: a repeated EDU
        // (a retried transaction) queues nothing.
        myelin_process::queue_to_device(
            self.store.as_ref(),
            self.bus.as_ref(),
            ToDeviceSend {
                sender: content.sender.to_string(),
                sender_device: format!("federation:{origin}"),
                txn_id: content.message_id.to_string(),
                event_type: content.ev_type.to_string(),
                messages,
                ts: now_millis(),
            },
        )
        .await
        .map_err(|error| error.to_string())?;
        Ok(())
    }
}

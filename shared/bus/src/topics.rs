//! Typed topics: a subject together with the one message type it carries.
//!
//! The streams beside room events ring their bell here: "position N of this
//! stream exists, for these users or this room". The store stays the truth;
//! a lost message only delays a reader until its next backstop read.

use std::marker::PhantomData;

use myelin_types::StreamPosition;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::messages::{decode, encode};
use crate::{Bus, BusResult, Incoming, Message};

/// A subject and the type of its messages.
pub struct Topic<M> {
    subject: &'static str,
    message: PhantomData<fn() -> M>,
}

impl<M> Topic<M> {
    const fn new(subject: &'static str) -> Topic<M> {
        Topic {
            subject,
            message: PhantomData,
        }
    }

    pub fn subject(&self) -> &'static str {
        self.subject
    }
}

impl<M: Serialize + DeserializeOwned + Send + 'static> Topic<M> {
    /// Announces the message without waiting for a confirmation: the store
    /// already holds what it announces.
    pub async fn announce(&self, bus: &dyn Bus, message: &M) -> BusResult<()> {
        bus.announce(self.subject, encode(message)).await
    }

    /// Live messages from now on, decoded; undecodable ones are skipped
    /// with a warning.
    pub async fn subscribe(&self, bus: &dyn Bus) -> BusResult<Incoming<M>> {
        let subject = self.subject;
        let messages = bus.subscribe(subject).await?;
        let decoded = futures::stream::unfold(messages, move |mut messages| async move {
            loop {
                let Message { payload, .. } = messages.next().await?;
                match decode::<M>(&payload) {
                    Ok(message) => return Some((message, messages)),
                    Err(error) => tracing::warn!(%error, subject, "unreadable message"),
                }
            }
        });
        Ok(Incoming::new(Box::pin(decoded)))
    }
}

/// A user's account data changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDataChanged {
    pub user_id: String,
    pub position: StreamPosition,
}

/// A user's receipt in a room changed; private receipts name only their owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptChanged {
    pub room_id: String,
    pub user_id: String,
    pub private: bool,
    pub position: StreamPosition,
}

/// A user started or stopped typing in a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingChanged {
    pub room_id: String,
    pub user_id: String,
    /// When the notice ends by itself (ms since the epoch); `None` stops it.
    pub until_ms: Option<i64>,
}

/// A user's presence changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChanged {
    pub user_id: String,
    pub position: StreamPosition,
}

/// Messages were queued for one or more of a user's devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceQueued {
    pub user_id: String,
    pub position: StreamPosition,
}

/// A user's devices or their keys changed (the store's device-list stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceListChanged {
    pub user_id: String,
}

/// A user's pushers were added, changed or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushersChanged {
    pub user_id: String,
}

/// Something was queued in the store for other servers (to-device
/// messages): the senders holding those destinations send now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationQueued {
    pub destinations: Vec<String>,
}

/// Another server sent a transaction: it is up, so a queue backing off
/// from it may send at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSeen {
    pub server_name: String,
}

pub const ACCOUNT_DATA: Topic<AccountDataChanged> = Topic::new("stream.account_data");
pub const RECEIPTS: Topic<ReceiptChanged> = Topic::new("stream.receipts");
pub const TYPING: Topic<TypingChanged> = Topic::new("stream.typing");
pub const PRESENCE: Topic<PresenceChanged> = Topic::new("stream.presence");
pub const TO_DEVICE: Topic<ToDeviceQueued> = Topic::new("stream.to_device");
pub const DEVICE_LISTS: Topic<DeviceListChanged> = Topic::new("stream.device_lists");
pub const PUSHERS: Topic<PushersChanged> = Topic::new("pushers.changed");
pub const SERVER_SEEN: Topic<ServerSeen> = Topic::new("federation.server_seen");
pub const FEDERATION_QUEUED: Topic<FederationQueued> = Topic::new("federation.queued");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBus;

    #[tokio::test]
    async fn a_topic_carries_its_own_type() {
        let bus = MemoryBus::new();
        let mut changes = ACCOUNT_DATA.subscribe(&bus).await.expect("subscribe");
        bus.announce(ACCOUNT_DATA.subject(), bytes::Bytes::from_static(b"{"))
            .await
            .expect("announce garbage");
        let change = AccountDataChanged {
            user_id: "@a:hs".to_owned(),
            position: StreamPosition(4),
        };
        ACCOUNT_DATA
            .announce(&bus, &change)
            .await
            .expect("announce");
        assert_eq!(changes.next().await, Some(change), "garbage is skipped");
    }
}

//! The to-device stream: messages sent straight to devices, each kept in
//! its device's inbox until that device's next sync acknowledges it.

use async_trait::async_trait;
use myelin_types::StreamPosition;

use crate::StoreResult;

/// A message for one device (`*` already expanded by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToDevice {
    pub user_id: String,
    pub device_id: String,
    /// The message's content as JSON.
    pub content: String,
}

/// One send: the sender's device and transaction, and its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceSend {
    pub sender: String,
    pub sender_device: String,
    pub txn_id: String,
    pub event_type: String,
    pub messages: Vec<NewToDevice>,
    /// When it was sent (ms since the epoch).
    pub ts: i64,
}

/// A device's acknowledgement: everything up to `upto` arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceAck {
    pub user_id: String,
    pub device_id: String,
    pub upto: StreamPosition,
}

/// A message waiting in a device's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceMessage {
    pub position: StreamPosition,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

#[async_trait]
pub trait ToDeviceStore: Send + Sync {
    /// Queues the send's messages, each at a new position, all or nothing,
    /// once per sending device and transaction ID: a retry queues nothing
    /// and answers `None`. Otherwise the highest position taken (`None`
    /// too when there were no messages).
    async fn send_to_device(&self, send: ToDeviceSend) -> StoreResult<Option<StreamPosition>>;

    /// The device's messages in `(after, upto]`, oldest first, at most
    /// `limit`.
    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: StreamPosition,
        upto: StreamPosition,
        limit: usize,
    ) -> StoreResult<Vec<ToDeviceMessage>>;

    /// Removes each device's messages at or below its position: its sync
    /// acknowledged them. Delivery never looks below the client's `since`,
    /// so this only frees space, and may lag.
    async fn acknowledge_to_device(&self, acks: &[ToDeviceAck]) -> StoreResult<()>;

    /// The highest position below which every send has committed.
    async fn max_to_device_position(&self) -> StoreResult<StreamPosition>;
}

//! EDUs of this server's users: typing notices and read receipts, rung on
//! the bus, are queued for the other servers in the room (each replica for
//! the destinations it holds). To-device messages are queued by the client
//! API directly.

use myelin_bus::topics::{ReceiptChanged, TypingChanged};
use myelin_store::QueuedEdu;
use myelin_types::{Partition, StreamPosition};
use serde_json::{Value, json};

use crate::FederationSender;

impl FederationSender {
    fn is_local(&self, user_id: &str) -> bool {
        user_id
            .split_once(':')
            .is_some_and(|(_, server)| server == self.config.server_name)
    }

    /// Queues `edu` for every other server in the room this replica holds.
    async fn queue_for_room(&self, room_id: &str, edu: Value) {
        let servers = match self.servers_in_room(room_id).await {
            Ok(servers) => servers,
            Err(error) => {
                tracing::warn!(%error, %room_id, "cannot find the servers of a room");
                return;
            }
        };
        let held = self.held().keys().copied().collect::<Vec<u16>>();
        let edu_json = edu.to_string();
        let edus: Vec<QueuedEdu> = servers
            .into_iter()
            .filter(|server| *server != self.config.server_name)
            .filter_map(|destination| {
                let partition = Partition::of_server(&destination).0;
                held.contains(&partition).then(|| QueuedEdu {
                    destination,
                    partition,
                    edu_json: edu_json.clone(),
                })
            })
            .collect();
        if edus.is_empty() {
            return;
        }
        match self.store.enqueue_edus(edus).await {
            Ok(()) => self.wake.notify_one(),
            Err(error) => tracing::warn!(%error, "cannot queue an EDU"),
        }
    }

    pub(crate) async fn queue_typing(&self, change: TypingChanged) {
        if !self.is_local(&change.user_id) {
            return;
        }
        let edu = json!({
            "edu_type": "m.typing",
            "content": {
                "room_id": change.room_id,
                "user_id": change.user_id,
                "typing": change.until_ms.is_some(),
            },
        });
        self.queue_for_room(&change.room_id, edu).await;
    }

    pub(crate) async fn queue_receipt(&self, change: ReceiptChanged) {
        if change.private || !self.is_local(&change.user_id) {
            return;
        }
        let since = StreamPosition(change.position.0 - 1);
        let receipts = match self
            .store
            .receipt_changes(
                std::slice::from_ref(&change.room_id),
                Some(since),
                change.position,
            )
            .await
        {
            Ok(receipts) => receipts,
            Err(error) => {
                tracing::warn!(%error, "cannot read a receipt to send");
                return;
            }
        };
        for receipt in receipts
            .into_iter()
            .filter(|receipt| receipt.user_id == change.user_id && receipt.receipt_type == "m.read")
        {
            let mut data = json!({"ts": receipt.ts});
            if let Some(thread_id) = &receipt.thread_id {
                data["thread_id"] = Value::String(thread_id.clone());
            }
            let edu = json!({
                "edu_type": "m.receipt",
                "content": {
                    receipt.room_id.clone(): {
                        "m.read": {
                            receipt.user_id.clone(): {
                                "event_ids": [receipt.event_id],
                                "data": data,
                            }
                        }
                    }
                },
            });
            self.queue_for_room(&receipt.room_id, edu).await;
        }
    }
}

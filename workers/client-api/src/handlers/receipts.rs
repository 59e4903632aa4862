//! Read receipts (`m.read`, `m.read.private`, threaded) and read markers
//! (`m.fully_read`, which is room account data).

use std::sync::Arc;

use myelin_bus::topics::{self, ReceiptChanged};
use myelin_http::{MatrixError, RequestContext};
use myelin_store::NewReceipt;
use myelin_types::now_millis;
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};
use ruma::events::receipt::ReceiptThread;
use ruma::{EventId, RoomId};
use serde_json::json;

use crate::ClientApi;

const READ: &str = "m.read";
const READ_PRIVATE: &str = "m.read.private";
const FULLY_READ: &str = "m.fully_read";

impl ClientApi {
    /// A receipt or marker needs a joined caller and an event of the room
    /// they may see.
    async fn require_receipt_target(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        user_id: &str,
    ) -> Result<(), MatrixError> {
        if self
            .current_membership(room_id.as_str(), user_id)
            .await?
            .as_deref()
            != Some("join")
        {
            return Err(MatrixError::forbidden("You are not joined to this room"));
        }
        let reader = self.room_reader(room_id.as_str(), user_id).await?;
        let event = self
            .store
            .event(event_id.as_str())
            .await?
            .filter(|event| event.room_id == room_id.as_str() && reader.may_see(event));
        if event.is_none() {
            return Err(MatrixError::not_found("Event not found in this room"));
        }
        Ok(())
    }

    async fn put_receipt(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        user_id: &str,
        receipt_type: &str,
        thread_id: Option<String>,
    ) -> Result<(), MatrixError> {
        let position = self
            .store
            .set_receipt(NewReceipt {
                room_id: room_id.to_string(),
                receipt_type: receipt_type.to_owned(),
                user_id: user_id.to_owned(),
                thread_id,
                event_id: event_id.to_string(),
                ts: now_millis(),
            })
            .await?;
        let change = ReceiptChanged {
            room_id: room_id.to_string(),
            user_id: user_id.to_owned(),
            private: receipt_type == READ_PRIVATE,
            position,
        };
        if let Err(error) = topics::RECEIPTS.announce(self.bus.as_ref(), &change).await {
            tracing::warn!(%error, "cannot announce a receipt");
        }
        Ok(())
    }

    async fn put_fully_read(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        user_id: &str,
    ) -> Result<(), MatrixError> {
        self.put_account_data(
            user_id,
            Some(room_id.as_str()),
            FULLY_READ,
            &json!({"event_id": event_id}),
        )
        .await
    }
}

/// `None` for an unthreaded receipt, `"main"` or the thread root otherwise.
fn thread_id_of(thread: &ReceiptThread) -> Result<Option<String>, MatrixError> {
    match thread {
        ReceiptThread::Unthreaded => Ok(None),
        ReceiptThread::Main => Ok(Some("main".to_owned())),
        ReceiptThread::Thread(root) => Ok(Some(root.to_string())),
        _ => Err(MatrixError::invalid_param(
            "thread_id must be \"main\" or an event ID",
        )),
    }
}

pub(crate) async fn create(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: create_receipt::v3::Request,
) -> Result<create_receipt::v3::Response, MatrixError> {
    let user = context.user()?;
    let receipt_type = match &request.receipt_type {
        ReceiptType::Read => READ,
        ReceiptType::ReadPrivate => READ_PRIVATE,
        ReceiptType::FullyRead => FULLY_READ,
        other => {
            return Err(MatrixError::invalid_param(format!(
                "Unknown receipt type {}",
                other.as_str()
            )));
        }
    };
    let thread_id = thread_id_of(&request.thread)?;
    if receipt_type == FULLY_READ && thread_id.is_some() {
        return Err(MatrixError::invalid_param(
            "The fully-read marker has no thread",
        ));
    }
    api.require_receipt_target(&request.room_id, &request.event_id, &user.user_id)
        .await?;
    if receipt_type == FULLY_READ {
        api.put_fully_read(&request.room_id, &request.event_id, &user.user_id)
            .await?;
    } else {
        api.put_receipt(
            &request.room_id,
            &request.event_id,
            &user.user_id,
            receipt_type,
            thread_id,
        )
        .await?;
    }
    Ok(create_receipt::v3::Response::new())
}

pub(crate) async fn set_markers(
    api: Arc<ClientApi>,
    context: RequestContext,
    request: set_read_marker::v3::Request,
) -> Result<set_read_marker::v3::Response, MatrixError> {
    let user = context.user()?;
    let targets = [
        request.fully_read.as_ref(),
        request.read_receipt.as_ref(),
        request.private_read_receipt.as_ref(),
    ];
    for event_id in targets.into_iter().flatten() {
        api.require_receipt_target(&request.room_id, event_id, &user.user_id)
            .await?;
    }
    if let Some(event_id) = &request.fully_read {
        api.put_fully_read(&request.room_id, event_id, &user.user_id)
            .await?;
    }
    if let Some(event_id) = &request.read_receipt {
        api.put_receipt(&request.room_id, event_id, &user.user_id, READ, None)
            .await?;
    }
    if let Some(event_id) = &request.private_read_receipt {
        api.put_receipt(
            &request.room_id,
            event_id,
            &user.user_id,
            READ_PRIVATE,
            None,
        )
        .await?;
    }
    Ok(set_read_marker::v3::Response::new())
}

//! Queueing to-device messages, from a local client or another server:
//! into each device's inbox, then a bell for each recipient's syncs.

use std::collections::BTreeSet;

use myelin_bus::Bus;
use myelin_bus::topics::{self, ToDeviceQueued};
use myelin_store::{Store, StoreResult, ToDeviceSend};

/// Queues `send` (once per sending device and transaction ID, as the store
/// keeps it) and tells the recipients' synchrotrons.
pub async fn queue_to_device(
    store: &dyn Store,
    bus: &dyn Bus,
    send: ToDeviceSend,
) -> StoreResult<()> {
    let recipients: BTreeSet<String> = send
        .messages
        .iter()
        .map(|message| message.user_id.clone())
        .collect();
    let Some(position) = store.send_to_device(send).await? else {
        return Ok(());
    };
    for user_id in recipients {
        let queued = ToDeviceQueued { user_id, position };
        if let Err(error) = topics::TO_DEVICE.announce(bus, &queued).await {
            // The messages are stored; the next sync finds them.
            tracing::warn!(%error, "cannot announce to-device messages");
        }
    }
    Ok(())
}

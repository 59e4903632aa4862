//! Queueing to-device messages, from a local client or another server:
//! into each device's inbox, then a bell for each recipient's syncs.

use std::collections::BTreeSet;

use myelin_bus::Bus;
use myelin_bus::topics::{self, ToDeviceQueued};
use myelin_store::{NewToDevice, Store, StoreResult, ToDeviceSend};
use ruma::to_device::DeviceIdOrAllDevices;

/// The inbox entries of one message to `user_id`: one for each of their
/// known `devices` it is addressed to: every one (`*`) or the one named
/// (none when that device is unknown).
pub fn addressed_messages<'a>(
    user_id: &'a str,
    target: &'a DeviceIdOrAllDevices,
    devices: &'a [String],
    content: &'a str,
) -> impl Iterator<Item = NewToDevice> + 'a {
    devices
        .iter()
        .filter(move |known| match target {
            DeviceIdOrAllDevices::AllDevices => true,
            DeviceIdOrAllDevices::DeviceId(wanted) => wanted.as_str() == known.as_str(),
        })
        .map(move |device_id| NewToDevice {
            user_id: user_id.to_owned(),
            device_id: device_id.clone(),
            content: content.to_owned(),
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_go_to_every_known_device_or_the_one_named() {
        let devices = vec!["A".to_owned(), "B".to_owned()];
        let to = |target: DeviceIdOrAllDevices| {
            addressed_messages("@u:hs", &target, &devices, "{}")
                .map(|message| message.device_id)
                .collect::<Vec<_>>()
        };
        let one = |device: &str| DeviceIdOrAllDevices::DeviceId(device.into());
        assert_eq!(to(DeviceIdOrAllDevices::AllDevices), ["A", "B"]);
        assert_eq!(to(one("B")), ["B"]);
        assert!(to(one("C")).is_empty(), "an unknown device gets nothing");
    }
}

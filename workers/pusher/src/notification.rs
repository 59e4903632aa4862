//! What a push gateway is told: the Push Gateway API's notification for one
//! event (or for a new badge alone), shaped by the pusher's `format` and
//! the server's `push.include_content`.

use myelin_store::{PushDue, Pusher};
use ruma::api::push_gateway::send_event_notification::v1::{
    Device, Notification, NotificationCounts, NotificationPriority, PusherData,
};
use ruma::push::{PushFormat, Tweak};
use ruma::serde::JsonObject;
use ruma::{SecondsSinceUnixEpoch, UInt};
use serde_json::Value;

/// The pusher's `data` as its client set it, and where it points.
pub(crate) struct PusherTarget {
    pub(crate) url: String,
    pub(crate) event_id_only: bool,
    device: Device,
}

impl PusherTarget {
    /// `None` when the stored data has no URL (it was checked when set).
    pub(crate) fn of(pusher: &Pusher) -> Option<PusherTarget> {
        let mut data: JsonObject = serde_json::from_str(&pusher.data).ok()?;
        let url = data.remove("url")?.as_str()?.to_owned();
        let format = match data.remove("format") {
            Some(Value::String(format)) => Some(PushFormat::from(format.as_str())),
            _ => None,
        };
        let event_id_only = format == Some(PushFormat::EventIdOnly);
        let mut device = Device::new(pusher.app_id.clone(), pusher.pushkey.clone());
        device.pushkey_ts = UInt::try_from(pusher.created_ts / 1000)
            .ok()
            .map(SecondsSinceUnixEpoch);
        let mut pusher_data = PusherData::new();
        pusher_data.format = format;
        pusher_data.data = data;
        device.data = pusher_data;
        Some(PusherTarget {
            url,
            event_id_only,
            device,
        })
    }
}

/// What the room and sender are called, for gateways that show it.
#[derive(Default)]
pub(crate) struct Names {
    pub(crate) room_name: Option<String>,
    pub(crate) sender_display_name: Option<String>,
}

fn counts(unread: u64) -> NotificationCounts {
    NotificationCounts::new(UInt::try_from(unread).unwrap_or(UInt::MAX), UInt::MIN)
}

/// The notification of one event.
pub(crate) fn of_event(
    target: &PusherTarget,
    user_id: &str,
    due: &PushDue,
    unread: u64,
    include_content: bool,
    names: Names,
) -> Notification {
    let event: Value = serde_json::from_str(&due.event.pdu_json).unwrap_or_default();
    let mut device = target.device.clone();
    if let Some(sound) = &due.sound {
        device.tweaks.push(Tweak::Sound(sound.as_str().into()));
    }
    if due.highlight {
        device.tweaks.push(Tweak::Highlight(true.into()));
    }
    let urgent = due.highlight || due.sound.is_some() || due.event.event_type == "m.room.encrypted";
    let mut notification = Notification::new(vec![device]);
    notification.event_id = due.event.event_id.as_str().try_into().ok();
    notification.room_id = due.event.room_id.as_str().try_into().ok();
    notification.counts = counts(unread);
    notification.prio = if urgent {
        NotificationPriority::High
    } else {
        NotificationPriority::Low
    };
    if target.event_id_only {
        return notification;
    }
    notification.event_type = Some(due.event.event_type.as_str().into());
    notification.sender = due.event.sender.as_str().try_into().ok();
    notification.user_is_target =
        due.event.event_type == "m.room.member" && due.event.state_key.as_deref() == Some(user_id);
    if include_content {
        notification.content = serde_json::value::to_raw_value(&event["content"]).ok();
        notification.room_name = names.room_name;
        notification.sender_display_name = names.sender_display_name;
    }
    notification
}

/// A notification that only sets the badge (after the user read something).
pub(crate) fn badge(target: &PusherTarget, unread: u64) -> Notification {
    let mut notification = Notification::new(vec![target.device.clone()]);
    notification.counts = counts(unread);
    notification
}

#[cfg(test)]
mod tests {
    use myelin_store::StoredEvent;
    use myelin_types::StreamPosition;

    use super::*;

    fn pusher(data: Value) -> Pusher {
        Pusher {
            user_id: "@alice:hs".to_owned(),
            kind: "http".to_owned(),
            app_id: "app".to_owned(),
            pushkey: "key".to_owned(),
            app_display_name: String::new(),
            device_display_name: String::new(),
            profile_tag: None,
            lang: "en".to_owned(),
            data: data.to_string(),
            device_id: None,
            created_ts: 5_000,
        }
    }

    fn due(highlight: bool) -> PushDue {
        PushDue {
            event: StoredEvent {
                position: StreamPosition(3),
                slot: StreamPosition(3),
                opens_gap: false,
                event_id: "$e:hs".to_owned(),
                room_id: "!r:hs".to_owned(),
                sender: "@bob:hs".to_owned(),
                event_type: "m.room.message".to_owned(),
                state_key: None,
                depth: 1,
                origin_server_ts: 1,
                pdu_json: r#"{"content":{"body":"hi","msgtype":"m.text"}}"#.to_owned(),
                txn: None,
                redacted_by: None,
                redaction_pdu_json: None,
            },
            highlight,
            sound: highlight.then(|| "default".to_owned()),
        }
    }

    #[test]
    fn a_full_notification_carries_the_event_and_the_pushers_data_without_its_url() {
        let target = PusherTarget::of(&pusher(serde_json::json!({
            "url": "https://push.example/_matrix/push/v1/notify", "extra": 1
        })))
        .expect("a target");
        assert_eq!(target.url, "https://push.example/_matrix/push/v1/notify");
        let names = Names {
            room_name: Some("Room".to_owned()),
            sender_display_name: Some("Bob".to_owned()),
        };
        let sent = serde_json::to_value(of_event(&target, "@alice:hs", &due(true), 2, true, names))
            .expect("JSON");
        assert_eq!(sent["event_id"], "$e:hs");
        assert_eq!(sent["content"]["body"], "hi");
        assert_eq!(sent["room_name"], "Room");
        assert_eq!(sent["counts"]["unread"], 2);
        assert_eq!(sent["devices"][0]["data"], serde_json::json!({"extra": 1}));
        assert_eq!(sent["devices"][0]["pushkey_ts"], 5);
        assert_eq!(sent["devices"][0]["tweaks"]["sound"], "default");
        assert_eq!(sent["devices"][0]["tweaks"]["highlight"], true);
        assert!(sent.get("prio").is_none_or(|prio| prio == "high"));
    }

    #[test]
    fn event_id_only_and_no_content_leave_the_message_out() {
        let target = PusherTarget::of(&pusher(serde_json::json!({
            "url": "https://push.example/_matrix/push/v1/notify", "format": "event_id_only"
        })))
        .expect("a target");
        let sent = serde_json::to_value(of_event(
            &target,
            "@alice:hs",
            &due(false),
            1,
            true,
            Names::default(),
        ))
        .expect("JSON");
        assert_eq!(sent["event_id"], "$e:hs");
        assert!(sent.get("content").is_none() && sent.get("sender").is_none());
        assert_eq!(sent["prio"], "low");
        assert_eq!(sent["devices"][0]["data"]["format"], "event_id_only");

        let full = PusherTarget::of(&pusher(serde_json::json!({
            "url": "https://push.example/_matrix/push/v1/notify"
        })))
        .expect("a target");
        let names = Names {
            room_name: Some("Room".to_owned()),
            sender_display_name: None,
        };
        let private =
            serde_json::to_value(of_event(&full, "@alice:hs", &due(false), 1, false, names))
                .expect("JSON");
        assert_eq!(private["sender"], "@bob:hs");
        assert!(private.get("content").is_none() && private.get("room_name").is_none());
    }
}

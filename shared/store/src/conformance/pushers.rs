//! Pushers: set, replaced, taken over, removed with their device, and the
//! pushes each still owes.

use myelin_types::{Partition, StreamPosition};

use crate::{NewReceipt, PushAction, Pusher, Store};

fn pusher(user: &str, app_id: &str, pushkey: &str, device: Option<&str>) -> Pusher {
    Pusher {
        user_id: user.to_owned(),
        kind: "http".to_owned(),
        app_id: app_id.to_owned(),
        pushkey: pushkey.to_owned(),
        app_display_name: "App".to_owned(),
        device_display_name: "Phone".to_owned(),
        profile_tag: None,
        lang: "en".to_owned(),
        data: r#"{"url":"https://push.example/_matrix/push/v1/notify"}"#.to_owned(),
        device_id: device.map(str::to_owned),
        created_ts: 1,
    }
}

pub(super) async fn pushers_are_kept_replaced_and_removed(store: &dyn Store) {
    let (alice, bob) = ("@pusher-alice:conformance", "@pusher-bob:conformance");
    let start = StreamPosition(7);
    store
        .set_pusher(pusher(alice, "app", "key-a", Some("PHONE")), false, start)
        .await
        .expect("set");
    store
        .set_pusher(pusher(alice, "app", "key-b", Some("TABLET")), false, start)
        .await
        .expect("set");
    let mut renamed = pusher(alice, "app", "key-a", Some("PHONE"));
    renamed.device_display_name = "Renamed".to_owned();
    // Setting it again keeps how far it delivered, not the new start.
    store
        .advance_pusher(alice, "app", "key-a", StreamPosition(9))
        .await
        .expect("advance");
    store
        .set_pusher(renamed, false, StreamPosition(100))
        .await
        .expect("replace");
    let of_alice = store.pushers_of_user(alice).await.expect("list");
    assert_eq!(of_alice.len(), 2);
    assert_eq!(of_alice[0].device_display_name, "Renamed");

    let partition = Partition::of_user(alice).0;
    let elsewhere = (partition + 1) % myelin_types::PARTITION_COUNT;
    let http = store.http_pushers(&[partition]).await.expect("http");
    let key_a = http
        .iter()
        .find(|progress| progress.pusher.user_id == alice && progress.pusher.pushkey == "key-a")
        .expect("alice's pusher in her partition");
    assert_eq!(key_a.delivered_upto, StreamPosition(9));
    let other = store.http_pushers(&[elsewhere]).await.expect("http");
    assert!(
        other
            .iter()
            .all(|progress| progress.pusher.user_id != alice)
    );
    // Delivery never moves back.
    store
        .advance_pusher(alice, "app", "key-a", StreamPosition(8))
        .await
        .expect("advance");
    let http = store.http_pushers(&[partition]).await.expect("http");
    assert!(
        http.iter()
            .any(|p| p.pusher.pushkey == "key-a" && p.delivered_upto.0 == 9)
    );

    // Without `append`, the pushkey moves to its new user.
    store
        .set_pusher(pusher(bob, "app", "key-b", None), false, start)
        .await
        .expect("take over");
    let of_alice = store.pushers_of_user(alice).await.expect("list");
    assert_eq!(of_alice.len(), 1);
    assert_eq!(of_alice[0].pushkey, "key-a");
    // With it, both keep it.
    store
        .set_pusher(pusher(alice, "app", "key-b", None), true, start)
        .await
        .expect("append");
    assert_eq!(store.pushers_of_user(bob).await.expect("list").len(), 1);
    assert_eq!(store.pushers_of_user(alice).await.expect("list").len(), 2);

    // A pusher goes with the device that set it.
    store
        .delete_devices(alice, &["PHONE".to_owned()])
        .await
        .expect("delete device");
    let left: Vec<String> = store
        .pushers_of_user(alice)
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.pushkey)
        .collect();
    assert_eq!(left, ["key-b"]);
    assert!(
        store
            .delete_pusher(alice, "app", "key-b")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_pusher(alice, "app", "key-b")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .advance_pusher(alice, "app", "key-b", StreamPosition(50))
            .await
            .expect("advance a removed pusher")
    );
}

/// What a pusher still owes: notifying events in its window that no read
/// receipt covers, oldest first.
pub(super) async fn pushes_due_skip_what_was_read(store: &dyn Store) {
    let room = "!pushes:conformance";
    let user = "@pushed:conformance";
    let mut prev: Vec<String> = Vec::new();
    let mut positions = Vec::new();
    let mut ids = Vec::new();
    for n in 0..4 {
        let mut new = super::events::event(room, n, None, &prev);
        if n != 1 {
            new.push_actions = vec![PushAction {
                user_id: user.to_owned(),
                highlight: n == 3,
                thread_id: None,
                sound: (n == 3).then(|| "default".to_owned()),
            }];
        }
        ids.push(new.event_id.clone());
        prev = vec![new.event_id.clone()];
        positions.push(super::events::persist(store, new).await);
    }
    let all = store
        .pushes_due(user, StreamPosition(0), positions[3], 10)
        .await
        .expect("due");
    let due: Vec<(&str, bool, Option<&str>)> = all
        .iter()
        .map(|d| (d.event.event_id.as_str(), d.highlight, d.sound.as_deref()))
        .collect();
    assert_eq!(
        due,
        [
            (ids[0].as_str(), false, None),
            (ids[2].as_str(), false, None),
            (ids[3].as_str(), true, Some("default")),
        ]
    );
    // The window's ends are honoured.
    let window = store
        .pushes_due(user, positions[0], positions[2], 10)
        .await
        .expect("due");
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].event.event_id, ids[2]);
    let first = store
        .pushes_due(user, StreamPosition(0), positions[3], 1)
        .await
        .expect("due");
    assert_eq!(first.len(), 1);
    // A receipt on the third event reads what it covers.
    store
        .set_receipt(NewReceipt {
            room_id: room.to_owned(),
            receipt_type: "m.read".to_owned(),
            user_id: user.to_owned(),
            thread_id: None,
            event_id: ids[2].clone(),
            ts: 1,
        })
        .await
        .expect("receipt");
    let after_receipt = store
        .pushes_due(user, StreamPosition(0), positions[3], 10)
        .await
        .expect("due");
    assert_eq!(after_receipt.len(), 1);
    assert_eq!(after_receipt[0].event.event_id, ids[3]);
    // Not joined (no membership in the room's state): no badge.
    assert_eq!(store.unread_rooms(user).await.expect("badge"), 0);
}

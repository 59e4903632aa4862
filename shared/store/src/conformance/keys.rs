//! End-to-end keys and the to-device stream.

use myelin_types::StreamPosition;

use crate::conformance::directory::{JOIN, create_users, room, state_event};
use crate::{
    DeviceKeysRecord, DeviceListSubject, KeyClaim, NewToDevice, PersistOutcome, RemoteDeviceList,
    Store, StoreError, ToDeviceAck, ToDeviceSend, UploadedKey,
};

fn key(algorithm: &str, name: &str, json: &str) -> UploadedKey {
    UploadedKey {
        algorithm: algorithm.to_owned(),
        key_id: format!("{algorithm}:{name}"),
        key_json: json.to_owned(),
    }
}

fn claim(user: &str, device: &str) -> KeyClaim {
    KeyClaim {
        user_id: user.to_owned(),
        device_id: device.to_owned(),
        algorithm: "signed_curve25519".to_owned(),
    }
}

pub(super) async fn keys_are_stored_counted_and_claimed_once(store: &dyn Store) {
    let (user, device) = ("@keys:c", "KEYDEV");
    let before = store.max_device_list_position().await.expect("position");
    for (id, json) in [("KEYDEV", "{\"a\":1}"), ("OTHER", "{\"b\":2}")] {
        store
            .set_device_keys(DeviceKeysRecord {
                user_id: user.to_owned(),
                device_id: id.to_owned(),
                key_json: json.to_owned(),
            })
            .await
            .expect("device keys");
    }
    store
        .set_device_keys(DeviceKeysRecord {
            user_id: user.to_owned(),
            device_id: "OTHER".to_owned(),
            key_json: "{\"b\":3}".to_owned(),
        })
        .await
        .expect("replace");
    let record = DeviceKeysRecord {
        user_id: user.to_owned(),
        device_id: "OTHER".to_owned(),
        key_json: "{\"b\":3}".to_owned(),
    };
    assert!(
        !store.set_device_keys(record).await.expect("same again"),
        "the same keys change nothing"
    );
    let changed_upto = store.max_device_list_position().await.expect("position");
    assert!(changed_upto > before);
    assert_eq!(
        store
            .device_list_changes(before, changed_upto, 10)
            .await
            .expect("changes"),
        [user],
        "each user once"
    );
    let all = store.device_keys(user, &[]).await.expect("all");
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|record| (record.device_id.as_str(), record.key_json.as_str()))
        .collect();
    assert_eq!(seen, [("KEYDEV", "{\"a\":1}"), ("OTHER", "{\"b\":3}")]);
    let one = store
        .device_keys(user, &["OTHER".to_owned(), "GONE".to_owned()])
        .await
        .expect("some");
    assert_eq!(one.len(), 1);

    let one_time = [
        key("signed_curve25519", "AAAA", "{\"k\":\"a\"}"),
        key("signed_curve25519", "AAAB", "{\"k\":\"b\"}"),
        key("curve25519", "AAAC", "{\"k\":\"c\"}"),
    ];
    let fallback = [key("signed_curve25519", "FB1", "{\"f\":1}")];
    store
        .add_keys(user, device, &one_time, &fallback)
        .await
        .expect("upload");
    // The same keys again change nothing; one with other content is refused
    // and the whole upload with it.
    store
        .add_keys(user, device, &one_time[..1], &[])
        .await
        .expect("same again");
    let clash = store
        .add_keys(
            user,
            device,
            &[
                key("signed_curve25519", "NEW1", "{\"k\":\"n\"}"),
                key("signed_curve25519", "AAAA", "{\"k\":\"other\"}"),
            ],
            &[],
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    let counts = store
        .one_time_key_counts(user, device)
        .await
        .expect("counts");
    assert_eq!(counts.get("signed_curve25519"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("curve25519"), Some(&1));
    assert_eq!(
        store
            .unused_fallback_algorithms(user, device)
            .await
            .expect("fallbacks"),
        ["signed_curve25519"]
    );

    // Two one-time keys, then the fallback (again and again), then for an
    // unknown device nothing.
    let mut handed = Vec::new();
    for _ in 0..4 {
        let claimed = store
            .claim_keys(&[claim(user, device), claim(user, "NOBODY")])
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        handed.push(claimed[0].key_id.clone());
    }
    assert_eq!(
        handed,
        [
            "signed_curve25519:AAAA",
            "signed_curve25519:AAAB",
            "signed_curve25519:FB1",
            "signed_curve25519:FB1"
        ]
    );
    assert_eq!(
        store
            .one_time_key_counts(user, device)
            .await
            .expect("counts")
            .get("signed_curve25519"),
        None
    );
    assert!(
        store
            .unused_fallback_algorithms(user, device)
            .await
            .expect("fallbacks")
            .is_empty(),
        "a handed-out fallback key is used"
    );
    // Re-uploading the used fallback key keeps it used; a new one is fresh.
    store
        .add_keys(user, device, &[], &fallback)
        .await
        .expect("same fallback");
    assert!(
        store
            .unused_fallback_algorithms(user, device)
            .await
            .expect("fallbacks")
            .is_empty()
    );
    store
        .add_keys(
            user,
            device,
            &[],
            &[key("signed_curve25519", "FB2", "{\"f\":2}")],
        )
        .await
        .expect("new fallback");
    assert_eq!(
        store
            .unused_fallback_algorithms(user, device)
            .await
            .expect("fallbacks"),
        ["signed_curve25519"]
    );

    // Deleting the device deletes its keys, a change of the device list.
    let before_delete = store.max_device_list_position().await.expect("position");
    store
        .delete_devices(user, &[device.to_owned()])
        .await
        .expect("delete");
    let after_delete = store.max_device_list_position().await.expect("position");
    assert_eq!(
        store
            .device_list_changes(before_delete, after_delete, 10)
            .await
            .expect("changes"),
        [user]
    );
    assert_eq!(store.device_keys(user, &[]).await.expect("keys").len(), 1);
    assert!(
        store
            .claim_keys(&[claim(user, device)])
            .await
            .expect("claim")
            .is_empty()
    );
}

pub(super) async fn many_claimers_never_share_a_key(store: &dyn Store) {
    let (user, device) = ("@race:c", "RACEDEV");
    let keys: Vec<UploadedKey> = (0..20)
        .map(|n| {
            key(
                "signed_curve25519",
                &format!("K{n:02}"),
                &format!("{{\"n\":{n}}}"),
            )
        })
        .collect();
    store
        .add_keys(user, device, &keys, &[])
        .await
        .expect("upload");
    let wanted = [claim(user, device)];
    let claims: Vec<_> = (0..25).map(|_| store.claim_keys(&wanted)).collect();
    let mut handed: Vec<String> = futures::future::join_all(claims)
        .await
        .into_iter()
        .flat_map(|claimed| claimed.expect("claim"))
        .map(|key| key.key_id)
        .collect();
    assert_eq!(handed.len(), 20, "every key once, then none");
    handed.sort();
    handed.dedup();
    assert_eq!(handed.len(), 20, "no key handed out twice");
}

pub(super) async fn to_device_messages_wait_until_acknowledged(store: &dyn Store) {
    let start = store.max_to_device_position().await.expect("position");
    let message = |device: &str, n: u32| NewToDevice {
        user_id: "@inbox:c".to_owned(),
        device_id: device.to_owned(),
        content: format!("{{\"n\":{n}}}"),
    };
    let send = |txn: &str, messages: Vec<NewToDevice>| ToDeviceSend {
        sender: "@sender:c".to_owned(),
        sender_device: "SENDER".to_owned(),
        txn_id: txn.to_owned(),
        event_type: "m.room_key".to_owned(),
        messages,
        ts: 1_000,
    };
    let first = store
        .send_to_device(send("t1", vec![message("D1", 1), message("D2", 1)]))
        .await
        .expect("send")
        .expect("new");
    assert!(first > start);
    assert_eq!(
        store
            .send_to_device(send("t1", vec![message("D1", 9)]))
            .await
            .expect("retry"),
        None,
        "a retried transaction queues nothing"
    );
    let second = store
        .send_to_device(send("t2", vec![message("D1", 2), message("D1", 3)]))
        .await
        .expect("send")
        .expect("new");
    assert_eq!(store.max_to_device_position().await.expect("max"), second);
    let inbox = store
        .to_device_messages("@inbox:c", "D1", start, second, 10)
        .await
        .expect("inbox");
    let contents: Vec<&str> = inbox.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
    assert!(
        inbox
            .windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );
    assert_eq!(
        (inbox[0].sender.as_str(), inbox[0].event_type.as_str()),
        ("@sender:c", "m.room_key")
    );
    let page = store
        .to_device_messages("@inbox:c", "D1", start, second, 2)
        .await
        .expect("page");
    assert_eq!(page.len(), 2);
    // Acknowledged messages go; the others, and other devices', stay.
    store
        .acknowledge_to_device(&[ToDeviceAck {
            user_id: "@inbox:c".to_owned(),
            device_id: "D1".to_owned(),
            upto: page[1].position,
        }])
        .await
        .expect("ack");
    let rest = store
        .to_device_messages("@inbox:c", "D1", StreamPosition::ZERO, second, 10)
        .await
        .expect("rest");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].content, "{\"n\":3}");
    assert_eq!(
        store
            .to_device_messages("@inbox:c", "D2", StreamPosition::ZERO, second, 10)
            .await
            .expect("other device")
            .len(),
        1
    );
    // Another sending device may use the same transaction ID.
    let mut other = send("t1", vec![message("D2", 5)]);
    other.sender_device = "OTHERSENDER".to_owned();
    assert!(store.send_to_device(other).await.expect("send").is_some());
    store
        .delete_devices("@inbox:c", &["D2".to_owned()])
        .await
        .expect("delete");
    assert!(
        store
            .to_device_messages(
                "@inbox:c",
                "D2",
                StreamPosition::ZERO,
                StreamPosition(i64::MAX),
                10
            )
            .await
            .expect("gone")
            .is_empty(),
        "a deleted device's inbox goes with it"
    );
}

pub(super) async fn cross_signing_keys_and_signatures_are_kept(store: &dyn Store) {
    use crate::KeySignature;
    let user = "@xs:c";
    let before = store.max_device_list_position().await.expect("position");
    store
        .set_cross_signing_keys(
            user,
            &[
                ("master".to_owned(), "{\"m\":1}".to_owned()),
                ("self_signing".to_owned(), "{\"s\":1}".to_owned()),
            ],
        )
        .await
        .expect("keys");
    store
        .set_cross_signing_keys(user, &[("self_signing".to_owned(), "{\"s\":2}".to_owned())])
        .await
        .expect("replace");
    let keys = store.cross_signing_keys(user).await.expect("read");
    assert_eq!(keys.get("master").map(String::as_str), Some("{\"m\":1}"));
    assert_eq!(
        keys.get("self_signing").map(String::as_str),
        Some("{\"s\":2}")
    );
    assert_eq!(keys.len(), 2);
    let after = store.max_device_list_position().await.expect("position");
    assert_eq!(
        store
            .device_list_changes(before, after, 10)
            .await
            .expect("changes"),
        [user]
    );

    let signature = |target: &str, signer_key: &str, value: &str| KeySignature {
        target_user_id: "@xs-target:c".to_owned(),
        target_key_id: target.to_owned(),
        signer_user_id: user.to_owned(),
        signer_key_id: signer_key.to_owned(),
        signature: value.to_owned(),
    };
    store
        .add_key_signatures(&[
            signature("DEVICE", "ed25519:SSK", "sig1"),
            signature("MASTERPUB", "ed25519:USK", "sig2"),
        ])
        .await
        .expect("signatures");
    store
        .add_key_signatures(&[signature("DEVICE", "ed25519:SSK", "sig3")])
        .await
        .expect("replace");
    let kept = store.key_signatures("@xs-target:c").await.expect("read");
    let seen: Vec<(&str, &str)> = kept
        .iter()
        .map(|s| (s.target_key_id.as_str(), s.signature.as_str()))
        .collect();
    assert_eq!(seen, [("DEVICE", "sig3"), ("MASTERPUB", "sig2")]);
    assert!(
        store
            .device_list_changes(
                after,
                store.max_device_list_position().await.expect("p"),
                10
            )
            .await
            .expect("changes")
            .contains(&"@xs-target:c".to_owned()),
        "a signature is a change of its target's device list"
    );
}

pub(super) async fn key_backups_keep_the_better_key(store: &dyn Store) {
    use crate::{BackupKey, BackupScope};
    let user = "@backup:c";
    assert_eq!(store.backup_version(user, None).await.expect("none"), None);
    let first = store
        .create_backup_version(user, "m.megolm_backup.v1.curve25519-aes-sha2", "{\"a\":1}")
        .await
        .expect("create");
    let second = store
        .create_backup_version(user, "m.megolm_backup.v1.curve25519-aes-sha2", "{\"a\":2}")
        .await
        .expect("create");
    assert!(second > first);
    let current = store
        .backup_version(user, None)
        .await
        .expect("read")
        .expect("current");
    assert_eq!((current.version, current.count), (second, 0));
    assert!(
        store
            .update_backup_version(user, second, "{\"a\":3}")
            .await
            .expect("update")
    );
    assert_eq!(
        store
            .backup_version(user, Some(second))
            .await
            .expect("read")
            .expect("found")
            .auth_data,
        "{\"a\":3}"
    );

    let key = |room: &str, session: &str, verified: bool, index: i64, data: &str| BackupKey {
        room_id: room.to_owned(),
        session_id: session.to_owned(),
        first_message_index: index,
        forwarded_count: 0,
        is_verified: verified,
        session_data: data.to_owned(),
    };
    store
        .put_backup_keys(
            user,
            second,
            vec![
                key("!a:c", "s1", false, 5, "{\"d\":1}"),
                key("!a:c", "s2", false, 0, "{\"d\":2}"),
                key("!b:c", "s3", true, 0, "{\"d\":3}"),
            ],
        )
        .await
        .expect("put");
    let etag = store
        .backup_version(user, None)
        .await
        .expect("read")
        .expect("current")
        .etag;
    // A worse key changes nothing, not even the etag; a better one wins.
    store
        .put_backup_keys(
            user,
            second,
            vec![key("!a:c", "s1", false, 9, "{\"d\":\"worse\"}")],
        )
        .await
        .expect("put");
    let unchanged = store
        .backup_version(user, None)
        .await
        .expect("read")
        .expect("current");
    assert_eq!((unchanged.etag, unchanged.count), (etag, 3));
    store
        .put_backup_keys(
            user,
            second,
            vec![key("!a:c", "s1", true, 9, "{\"d\":\"better\"}")],
        )
        .await
        .expect("put");
    let session = store
        .backup_keys(user, second, BackupScope::Session("!a:c", "s1"))
        .await
        .expect("read");
    assert_eq!(session.len(), 1);
    assert_eq!(session[0].session_data, "{\"d\":\"better\"}");
    assert_ne!(
        store
            .backup_version(user, None)
            .await
            .expect("read")
            .expect("current")
            .etag,
        etag
    );
    assert_eq!(
        store
            .backup_keys(user, second, BackupScope::Room("!a:c"))
            .await
            .expect("room")
            .len(),
        2
    );
    store
        .delete_backup_keys(user, second, BackupScope::Room("!a:c"))
        .await
        .expect("delete");
    let left = store
        .backup_keys(user, second, BackupScope::All)
        .await
        .expect("all");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].room_id, "!b:c");
    assert!(
        store
            .backup_keys(user, first, BackupScope::All)
            .await
            .expect("first")
            .is_empty()
    );

    // Deleting the current version makes the one before it current.
    assert!(
        store
            .delete_backup_version(user, second)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_backup_version(user, second)
            .await
            .expect("again")
    );
    assert_eq!(
        store
            .backup_version(user, None)
            .await
            .expect("read")
            .expect("previous")
            .version,
        first
    );
    assert_eq!(
        store
            .backup_version(user, Some(second))
            .await
            .expect("gone"),
        None
    );
    assert!(
        !store
            .update_backup_version(user, second, "{}")
            .await
            .expect("gone")
    );
}

/// Appends `member`'s `membership` to a room [`room`] made with `made`
/// state events (the create event is the first).
async fn set_membership(
    store: &dyn Store,
    room_id: &str,
    made: usize,
    member: &str,
    membership: &str,
) {
    let content = format!(r#"{{"membership":"{membership}"}}"#);
    let prev = format!("${room_id}-{}", made);
    let event = state_event(
        room_id,
        made + 1,
        "m.room.member",
        member,
        &content,
        Some(&prev),
    );
    match store.persist_event(event).await.expect("persist") {
        PersistOutcome::Persisted(_) => {}
        other => panic!("expected a new event, got {other:?}"),
    }
}

/// Other servers' users' device lists are kept only while they share a
/// room with a local user, never behind a list already kept, and moved
/// on only from the position they stand at.
pub(super) async fn remote_device_lists_are_kept_while_a_room_is_shared(store: &dyn Store) {
    create_users(store, &["@rdlocal:test", "@rdlocal2:test"]).await;
    let (far, other, stranger) = ("@rdfar:remote", "@rdother:remote", "@rdstranger:remote");
    room(
        store,
        "!rd-a:test",
        &[
            ("m.room.member", "@rdlocal:test", JOIN),
            ("m.room.member", far, JOIN),
            ("m.room.member", other, JOIN),
        ],
    )
    .await;
    room(
        store,
        "!rd-b:test",
        &[
            ("m.room.member", "@rdlocal2:test", JOIN),
            ("m.room.member", other, JOIN),
        ],
    )
    .await;
    let list = |user_id: &str, stream_id: i64| RemoteDeviceList {
        user_id: user_id.to_owned(),
        stream_id,
        list_json: format!(r#"{{"at":{stream_id}}}"#),
    };
    let kept = |user_id: &'static str| async move {
        let lists = store
            .remote_device_lists(&[user_id.to_owned()])
            .await
            .expect("read lists");
        lists.into_iter().next().map(|list| list.stream_id)
    };

    assert!(
        store
            .shares_room_with_local_user(far)
            .await
            .expect("shares")
    );
    assert!(
        !store
            .shares_room_with_local_user(stranger)
            .await
            .expect("shares")
    );
    assert!(
        !store
            .keep_remote_device_list(&list(stranger, 1))
            .await
            .expect("keep")
    );
    assert_eq!(kept(stranger).await, None, "nothing shared: nothing kept");

    assert!(
        store
            .keep_remote_device_list(&list(far, 5))
            .await
            .expect("keep")
    );
    assert!(
        store
            .keep_remote_device_list(&list(other, 3))
            .await
            .expect("keep")
    );
    assert!(
        !store
            .keep_remote_device_list(&list(far, 4))
            .await
            .expect("keep")
    );
    assert!(
        !store
            .keep_remote_device_list(&list(far, 5))
            .await
            .expect("keep"),
        "a list at the same position was fetched before what was applied to it"
    );
    assert_eq!(
        kept(far).await,
        Some(5),
        "an older list never replaces a newer"
    );
    let both = store
        .remote_device_lists(&[far.to_owned(), other.to_owned(), stranger.to_owned()])
        .await
        .expect("read lists");
    assert_eq!(both.len(), 2);
    assert!(both.contains(&list(other, 3)));

    assert!(
        !store
            .advance_remote_device_list(&list(far, 7), 6)
            .await
            .expect("advance")
    );
    assert!(
        store
            .advance_remote_device_list(&list(far, 6), 5)
            .await
            .expect("advance")
    );
    assert_eq!(kept(far).await, Some(6));
    store.forget_remote_device_list(far).await.expect("forget");
    assert_eq!(kept(far).await, None);
    assert!(
        store
            .keep_remote_device_list(&list(far, 8))
            .await
            .expect("keep")
    );

    // The other server's user leaves the one room shared: their list goes.
    set_membership(store, "!rd-a:test", 3, far, "leave").await;
    assert_eq!(kept(far).await, None, "left the only shared room");
    assert_eq!(kept(other).await, Some(3));
    // A local user leaving goes through everyone in the room: `other`
    // still shares the second room.
    set_membership(store, "!rd-a:test", 4, "@rdlocal:test", "leave").await;
    assert_eq!(kept(other).await, Some(3), "still shares a room");
    set_membership(store, "!rd-b:test", 2, "@rdlocal2:test", "ban").await;
    assert_eq!(kept(other).await, None, "no local user left beside them");
}

/// Each device-list change names what changed, and the chain other
/// servers follow skips cross-signing key changes.
pub(super) async fn device_list_changes_name_what_changed(store: &dyn Store) {
    let user = "@dlsubject:test";
    let keys = |device: &str| DeviceKeysRecord {
        user_id: user.to_owned(),
        device_id: device.to_owned(),
        key_json: format!(r#"{{"device":"{device}"}}"#),
    };
    let before = store.max_device_list_position().await.expect("position");
    for device in ["D1", "D2", "D3"] {
        store.set_device_keys(keys(device)).await.expect("keys");
    }
    store
        .set_cross_signing_keys(user, &[("master".to_owned(), "{}".to_owned())])
        .await
        .expect("cross-signing keys");
    store
        .delete_devices(user, &["D1".to_owned()])
        .await
        .expect("delete");
    store
        .delete_other_devices(user, Some("D2"))
        .await
        .expect("delete the others");
    let upto = store.max_device_list_position().await.expect("position");
    let entries = store
        .device_list_entries(before, upto, 100)
        .await
        .expect("entries");
    let subjects: Vec<DeviceListSubject> = entries
        .iter()
        .filter(|entry| entry.user_id == user)
        .map(|entry| entry.subject.clone())
        .collect();
    let device = |id: &str| DeviceListSubject::Device(id.to_owned());
    assert_eq!(
        subjects,
        [
            device("D1"),
            device("D2"),
            device("D3"),
            DeviceListSubject::SigningKeys,
            device("D1"),
            device("D3"),
        ]
    );
    let positions: Vec<StreamPosition> = entries
        .iter()
        .filter(|entry| entry.user_id == user)
        .map(|entry| entry.position)
        .collect();
    let chain = |before| store.device_list_chain_position(user, before);
    assert_eq!(chain(None).await.expect("chain"), Some(positions[5]));
    assert_eq!(
        chain(Some(positions[4])).await.expect("chain"),
        Some(positions[2]),
        "the cross-signing change is not in the chain"
    );
    assert_eq!(chain(Some(positions[0])).await.expect("chain"), None);
    assert_eq!(
        store
            .device_list_chain_position("@dlnobody:test", None)
            .await
            .expect("chain"),
        None
    );
}

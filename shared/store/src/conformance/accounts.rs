use crate::{NewUser, NonceUse, ProfileUpdate, Store, StoreError};

fn new_user(user_id: &str) -> NewUser {
    NewUser {
        user_id: user_id.to_owned(),
        password_hash: Some("$argon2id$fake".to_owned()),
        is_admin: false,
        created_ts: 1,
    }
}

pub(super) async fn create_and_read_user(store: &dyn Store) {
    store
        .create_user(new_user("@alice:test"))
        .await
        .expect("create");
    let alice = store
        .user("@alice:test")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$fake"));
    assert!(!alice.is_admin && !alice.deactivated);
    assert!(store.user("@nobody:test").await.expect("read").is_none());
}

pub(super) async fn duplicate_user_conflicts(store: &dyn Store) {
    store
        .create_user(new_user("@dup:test"))
        .await
        .expect("create");
    let again = store.create_user(new_user("@dup:test")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

pub(super) async fn admin_flag_and_password(store: &dyn Store) {
    store
        .create_user(new_user("@admin:test"))
        .await
        .expect("create");
    store
        .set_admin("@admin:test", true)
        .await
        .expect("set admin");
    store
        .set_password_hash("@admin:test", "$argon2id$new")
        .await
        .expect("set password");
    let admin = store
        .user("@admin:test")
        .await
        .expect("read")
        .expect("exists");
    assert!(admin.is_admin);
    assert_eq!(admin.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(matches!(
        store.set_admin("@ghost:test", true).await,
        Err(StoreError::NotFound)
    ));
}

pub(super) async fn profile_updates(store: &dyn Store) {
    store
        .create_user(new_user("@profile:test"))
        .await
        .expect("create");
    let set_both = ProfileUpdate {
        displayname: Some(Some("Pro".to_owned())),
        avatar_url: Some(Some("mxc://test/a".to_owned())),
    };
    store
        .update_profile("@profile:test", set_both)
        .await
        .expect("update");
    let clear_name = ProfileUpdate {
        displayname: Some(None),
        avatar_url: None,
    };
    store
        .update_profile("@profile:test", clear_name)
        .await
        .expect("update");
    let user = store
        .user("@profile:test")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(user.displayname, None);
    assert_eq!(user.avatar_url.as_deref(), Some("mxc://test/a"));
}

pub(super) async fn device_tokens(store: &dyn Store) {
    store
        .create_user(new_user("@dev:test"))
        .await
        .expect("create");
    store
        .add_device_token("@dev:test", "D1", Some("phone"), "tok1")
        .await
        .expect("add");
    store
        .add_device_token("@dev:test", "D1", None, "tok1b")
        .await
        .expect("add");
    store
        .add_device_token("@dev:test", "D2", None, "tok2")
        .await
        .expect("add");
    let owner = store
        .token_owner("tok1b")
        .await
        .expect("read")
        .expect("live");
    assert_eq!(
        (owner.user_id.as_str(), owner.device_id.as_str()),
        ("@dev:test", "D1")
    );
    let devices = store.devices("@dev:test").await.expect("list");
    assert_eq!(devices.len(), 2);
    let phone = store
        .device("@dev:test", "D1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        phone.display_name.as_deref(),
        Some("phone"),
        "name kept on re-login"
    );

    store
        .rename_device("@dev:test", "D2", Some("laptop"))
        .await
        .expect("rename");
    assert!(matches!(
        store.rename_device("@dev:test", "D9", None).await,
        Err(StoreError::NotFound)
    ));

    store.delete_token("tok1").await.expect("logout");
    assert!(store.token_owner("tok1").await.expect("read").is_none());
    assert!(store.token_owner("tok1b").await.expect("read").is_some());

    store
        .delete_other_devices("@dev:test", Some("D2"))
        .await
        .expect("logout others");
    assert!(store.token_owner("tok1b").await.expect("read").is_none());
    assert!(store.token_owner("tok2").await.expect("read").is_some());
    store
        .delete_devices("@dev:test", &["D2".to_owned(), "D404".to_owned()])
        .await
        .expect("delete");
    assert!(store.token_owner("tok2").await.expect("read").is_none());
    assert!(store.devices("@dev:test").await.expect("list").is_empty());

    // No device to keep (`/logout/all`): every one goes, whatever its ID.
    for (device, token) in [("D3", "tok3"), ("", "tok-empty")] {
        store
            .add_device_token("@dev:test", device, None, token)
            .await
            .expect("add");
    }
    store
        .delete_other_devices("@dev:test", None)
        .await
        .expect("logout all");
    assert!(store.devices("@dev:test").await.expect("list").is_empty());
    for token in ["tok3", "tok-empty"] {
        assert!(store.token_owner(token).await.expect("read").is_none());
    }
}

pub(super) async fn deactivation_removes_tokens(store: &dyn Store) {
    store
        .create_user(new_user("@gone:test"))
        .await
        .expect("create");
    store
        .add_device_token("@gone:test", "G", None, "tokgone")
        .await
        .expect("add");
    store
        .deactivate_user("@gone:test")
        .await
        .expect("deactivate");
    assert!(store.token_owner("tokgone").await.expect("read").is_none());
    let gone = store
        .user("@gone:test")
        .await
        .expect("read")
        .expect("still known");
    assert!(gone.deactivated);
    assert!(gone.password_hash.is_none());
    assert!(matches!(
        store.create_user(new_user("@gone:test")).await,
        Err(StoreError::Conflict(_))
    ));
}

pub(super) async fn filters_round_trip(store: &dyn Store) {
    let first = store
        .create_filter("@f:test", r#"{"room":{}}"#)
        .await
        .expect("create");
    let second = store
        .create_filter("@f:test", r#"{"presence":{}}"#)
        .await
        .expect("create");
    assert_ne!(first, second);
    assert_eq!(
        store
            .filter("@f:test", &first)
            .await
            .expect("read")
            .as_deref(),
        Some(r#"{"room":{}}"#)
    );
    assert!(
        store
            .filter("@other:test", &first)
            .await
            .expect("read")
            .is_none()
    );
}

pub(super) async fn registration_nonces_are_single_use(store: &dyn Store) {
    let offer = |nonce: &'static str, expires_ts: i64, now: i64, max_live: u32| async move {
        store
            .use_registration_nonce(nonce, expires_ts, now, max_live)
            .await
            .expect("nonce")
    };
    assert_eq!(offer("n1", 1_060, 1_000, 3).await, NonceUse::Fresh);
    assert_eq!(offer("n1", 1_060, 1_001, 3).await, NonceUse::AlreadyUsed);
    assert_eq!(offer("n2", 1_061, 1_001, 3).await, NonceUse::Fresh);
    assert_eq!(offer("n3", 1_062, 1_002, 3).await, NonceUse::Fresh);
    assert_eq!(offer("n4", 1_063, 1_003, 3).await, NonceUse::TooMany);
    assert_eq!(
        offer("n1", 1_060, 1_003, 3).await,
        NonceUse::AlreadyUsed,
        "a used nonce stays used while the table is full"
    );
    // Once n1 and n2 expire, their rows go and make room.
    assert_eq!(offer("n4", 1_120, 1_061, 3).await, NonceUse::Fresh);
    assert_eq!(offer("n5", 1_121, 1_061, 3).await, NonceUse::Fresh);
    assert_eq!(offer("n6", 1_122, 1_061, 3).await, NonceUse::TooMany);
    assert_eq!(offer("n3", 1_062, 1_061, 3).await, NonceUse::AlreadyUsed);
}

use crate::{Store, StoreError};

pub(super) async fn alias_lifecycle(store: &dyn Store) {
    store
        .create_alias("#a:test", "!r:test", "@c:test")
        .await
        .expect("create");
    let taken = store
        .create_alias("#a:test", "!other:test", "@c:test")
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let record = store.alias("#a:test").await.expect("read").expect("exists");
    assert_eq!(
        (record.room_id.as_str(), record.creator.as_str()),
        ("!r:test", "@c:test")
    );
    assert_eq!(
        store.room_aliases("!r:test").await.expect("list"),
        vec!["#a:test".to_owned()]
    );
    store.delete_alias("#a:test").await.expect("delete");
    assert!(store.alias("#a:test").await.expect("read").is_none());
    assert!(matches!(
        store.delete_alias("#a:test").await,
        Err(StoreError::NotFound)
    ));
}

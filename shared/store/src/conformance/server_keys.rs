//! Other servers' signing keys.

use crate::{ServerKeyDocument, ServerVerifyKey, Store};

fn key(id: &str, public: &str, valid_until_ts: i64, expired_ts: Option<i64>) -> ServerVerifyKey {
    ServerVerifyKey {
        key_id: format!("ed25519:{id}"),
        public_key: public.to_owned(),
        valid_until_ts,
        expired_ts,
    }
}

fn document(valid_until_ts: i64, keys: Vec<ServerVerifyKey>) -> ServerKeyDocument {
    ServerKeyDocument {
        server_name: "keys.example".to_owned(),
        document: format!(r#"{{"valid_until_ts":{valid_until_ts}}}"#),
        valid_until_ts,
        fetched_ts: valid_until_ts - 1_000,
        keys,
    }
}

/// Keys keep their longest validity, retired keys stay retired, the
/// document valid longest is the one kept, and a changed key starts over.
pub(super) async fn server_keys_keep_their_longest_validity(store: &dyn Store) {
    let server = "keys.example";
    assert!(
        store
            .server_key_document(server)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .server_verify_keys(server)
            .await
            .expect("read")
            .is_empty()
    );

    let first = document(5_000, vec![key("a", "AAAA", 5_000, None)]);
    store.store_server_keys(&first).await.expect("store");
    assert_eq!(
        store.server_key_document(server).await.expect("read"),
        Some(first.clone())
    );

    // A newer document: `a` is retired, `b` is current.
    let second = document(
        9_000,
        vec![
            key("a", "AAAA", 7_000, Some(7_000)),
            key("b", "BBBB", 9_000, None),
        ],
    );
    store.store_server_keys(&second).await.expect("store");
    // An older one (from a notary's cache, say) changes no document and no
    // validity, and cannot bring `a` back.
    let stale = document(
        6_000,
        vec![key("a", "AAAA", 6_000, None), key("b", "BBBB", 6_000, None)],
    );
    store.store_server_keys(&stale).await.expect("store");

    let kept = store
        .server_key_document(server)
        .await
        .expect("read")
        .expect("a document");
    assert_eq!(kept.document, second.document);
    assert_eq!(kept.valid_until_ts, 9_000);
    assert_eq!(
        kept.keys,
        vec![
            key("a", "AAAA", 7_000, Some(7_000)),
            key("b", "BBBB", 9_000, None)
        ]
    );

    // The same key ID with another public key is a new key.
    store
        .store_server_keys(&document(10_000, vec![key("b", "CCCC", 10_000, None)]))
        .await
        .expect("store");
    let keys = store.server_verify_keys(server).await.expect("read");
    assert_eq!(keys[1], key("b", "CCCC", 10_000, None));
    // Other servers see none of it.
    assert!(
        store
            .server_verify_keys("other.example")
            .await
            .expect("read")
            .is_empty()
    );
}

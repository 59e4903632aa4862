use crate::{NewReport, Store, StoreError};

fn report(event_id: Option<&str>, reason: Option<&str>, score: Option<i64>) -> NewReport {
    NewReport {
        room_id: "!reported:test".to_owned(),
        event_id: event_id.map(str::to_owned),
        reporter: "@reporter:test".to_owned(),
        reason: reason.map(str::to_owned),
        score,
        received_ts: 5_000,
    }
}

/// Reports are kept whole and read back newest first, in pages.
pub(super) async fn reports_are_kept_for_admins(store: &dyn Store) {
    let first = report(Some("$bad:test"), Some("spam"), Some(-100));
    let second = report(None, None, None);
    let first_id = store.add_report(first.clone()).await.expect("report");
    let second_id = store.add_report(second.clone()).await.expect("report");
    assert!(second_id > first_id);
    let all = store.reports(None, 10).await.expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].report_id, &all[0].report),
        (second_id, &second),
        "newest first"
    );
    assert_eq!((all[1].report_id, &all[1].report), (first_id, &first));
    let older = store.reports(Some(second_id), 10).await.expect("page");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].report_id, first_id);
    assert_eq!(store.reports(None, 1).await.expect("limit").len(), 1);
}

/// OpenID tokens name their user until they expire, and are unique.
pub(super) async fn openid_tokens_expire(store: &dyn Store) {
    store
        .add_openid_token("oidc-a", "@oidc:test", 2_000, 1_000)
        .await
        .expect("add");
    assert_eq!(
        store
            .openid_token_owner("oidc-a", 1_999)
            .await
            .expect("read")
            .as_deref(),
        Some("@oidc:test")
    );
    assert_eq!(
        store
            .openid_token_owner("oidc-a", 2_000)
            .await
            .expect("read"),
        None,
        "expired"
    );
    assert_eq!(
        store.openid_token_owner("oidc-x", 0).await.expect("read"),
        None,
        "unknown"
    );
    let again = store
        .add_openid_token("oidc-a", "@other:test", 3_000, 1_000)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    // Adding a token later drops the expired ones.
    store
        .add_openid_token("oidc-b", "@oidc:test", 9_000, 5_000)
        .await
        .expect("add");
    store
        .add_openid_token("oidc-a", "@other:test", 9_000, 5_000)
        .await
        .expect("the expired token was dropped");
    assert_eq!(
        store
            .openid_token_owner("oidc-a", 5_000)
            .await
            .expect("read")
            .as_deref(),
        Some("@other:test")
    );
}

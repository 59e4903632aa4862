use crate::{FillOutcome, MediaContent, NewMedia, Store, StoreError, ThumbnailRecord};

/// A media ID first recorded by `uploader` at `created_ts`, without the
/// authenticated-only mark.
fn new_media<'a>(media_id: &'a str, uploader: &'a str, created_ts: i64) -> NewMedia<'a> {
    NewMedia {
        media_id,
        uploader,
        created_ts,
        authenticated: false,
    }
}

fn content(sha256: &str, size: u64) -> MediaContent {
    MediaContent {
        content_type: Some("image/png".to_owned()),
        upload_name: Some("cat picture.png".to_owned()),
        size,
        sha256: sha256.to_owned(),
    }
}

pub(super) async fn uploads_round_trip(store: &dyn Store) {
    let uploaded = content(&"ab".repeat(32), 1234);
    store
        .create_media(
            &new_media("conformanceUpload", "@up:test", 1_000),
            &uploaded,
        )
        .await
        .expect("create");
    let record = store
        .media("conformanceUpload")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(record.uploader, "@up:test");
    assert_eq!(record.created_ts, 1_000);
    assert_eq!(record.content, Some(uploaded.clone()));
    assert_eq!(record.pending_expires_ts, None);
    assert!(!record.authenticated);
    let again = store
        .create_media(
            &new_media("conformanceUpload", "@other:test", 2_000),
            &uploaded,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert!(
        store
            .media("conformanceMissing")
            .await
            .expect("read")
            .is_none()
    );

    let bare = MediaContent {
        content_type: None,
        upload_name: None,
        size: 0,
        sha256: "00".repeat(32),
    };
    store
        .create_media(&new_media("conformanceBare", "@up:test", 1_000), &bare)
        .await
        .expect("create without type or name");
    let record = store.media("conformanceBare").await.expect("read");
    assert_eq!(record.and_then(|record| record.content), Some(bare));

    // The authenticated-only mark is kept, for uploads and reservations.
    let marked = NewMedia {
        authenticated: true,
        ..new_media("conformanceMarked", "@up:test", 1_000)
    };
    store
        .create_media(&marked, &content(&"cd".repeat(32), 1))
        .await
        .expect("create marked");
    let reserved = NewMedia {
        media_id: "conformanceMarkedPending",
        ..marked
    };
    assert!(
        store
            .create_pending_media(&reserved, 9_000, 5)
            .await
            .expect("reserve marked")
    );
    for media_id in ["conformanceMarked", "conformanceMarkedPending"] {
        let record = store.media(media_id).await.expect("read").expect("exists");
        assert!(record.authenticated, "{media_id} lost its mark");
    }
}

pub(super) async fn pending_uploads_fill_once_by_their_owner(store: &dyn Store) {
    store
        .create_pending_media(
            &new_media("conformancePending", "@owner:test", 1_000),
            5_000,
            5,
        )
        .await
        .expect("reserve");
    let taken = store
        .create_pending_media(
            &new_media("conformancePending", "@owner:test", 1_000),
            5_000,
            5,
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let pending = store
        .media("conformancePending")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(pending.content, None);
    assert_eq!(pending.pending_expires_ts, Some(5_000));
    assert_eq!(
        store
            .pending_media_count("@owner:test", 2_000)
            .await
            .expect("count"),
        1
    );

    let uploaded = content(&"cd".repeat(32), 99);
    let fill = |user: &'static str, now: i64| {
        let uploaded = uploaded.clone();
        async move {
            store
                .fill_pending_media("conformancePending", user, now, &uploaded)
                .await
                .expect("fill")
        }
    };
    assert_eq!(fill("@intruder:test", 2_000).await, FillOutcome::NotOwner);
    assert_eq!(fill("@owner:test", 2_000).await, FillOutcome::Filled);
    assert_eq!(
        fill("@owner:test", 2_500).await,
        FillOutcome::AlreadyUploaded
    );
    assert_eq!(fill("@intruder:test", 2_500).await, FillOutcome::NotOwner);
    let filled = store
        .media("conformancePending")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(filled.content, Some(uploaded.clone()));
    assert_eq!(filled.pending_expires_ts, None);
    assert_eq!(
        store
            .pending_media_count("@owner:test", 2_000)
            .await
            .expect("count"),
        0
    );
    let unknown = store
        .fill_pending_media("conformanceNeverReserved", "@owner:test", 2_000, &uploaded)
        .await
        .expect("fill");
    assert_eq!(unknown, FillOutcome::NotFound);
}

pub(super) async fn reservations_stop_at_the_limit_even_in_parallel(store: &dyn Store) {
    let reserve = |n: usize, at: i64| async move {
        store
            .create_pending_media(
                &new_media(&format!("conformanceLimit{n}"), "@limit:test", at),
                at + 1_000,
                3,
            )
            .await
            .expect("reserve")
    };
    // Six at once on one uploader with room for three: exactly three pass.
    let (a, b, c, d, e, f) = tokio::join!(
        reserve(1, 1_000),
        reserve(2, 1_000),
        reserve(3, 1_000),
        reserve(4, 1_000),
        reserve(5, 1_000),
        reserve(6, 1_000)
    );
    let granted = [a, b, c, d, e, f]
        .iter()
        .filter(|granted| **granted)
        .count();
    assert_eq!(granted, 3, "parallel reservations passed the limit");
    // Expired reservations no longer count.
    assert!(reserve(7, 2_000).await);
}

pub(super) async fn expired_reservations_cannot_be_filled_and_are_purged(store: &dyn Store) {
    store
        .create_pending_media(
            &new_media("conformanceExpiring", "@late:test", 1_000),
            3_000,
            5,
        )
        .await
        .expect("reserve");
    store
        .create_pending_media(
            &new_media("conformanceStillValid", "@late:test", 1_000),
            9_000,
            5,
        )
        .await
        .expect("reserve");
    assert_eq!(
        store
            .pending_media_count("@late:test", 3_000)
            .await
            .expect("count"),
        1,
        "a reservation that expires at 3000 is gone at 3000"
    );
    let late = store
        .fill_pending_media(
            "conformanceExpiring",
            "@late:test",
            3_000,
            &content(&"ef".repeat(32), 5),
        )
        .await
        .expect("fill");
    assert_eq!(late, FillOutcome::NotFound);
    let purged = store
        .purge_expired_pending_media(3_000)
        .await
        .expect("purge");
    assert!(purged >= 1, "purged {purged}");
    assert!(
        store
            .media("conformanceExpiring")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .media("conformanceStillValid")
            .await
            .expect("read")
            .is_some(),
        "a valid reservation survives the purge"
    );
}

pub(super) async fn thumbnails_are_kept_per_size_and_method(store: &dyn Store) {
    store
        .create_media(
            &new_media("conformanceThumbs", "@up:test", 1_000),
            &content(&"12".repeat(32), 4096),
        )
        .await
        .expect("create");
    let thumb_sha = "34".repeat(32);
    assert!(
        !store.blob_in_use(&thumb_sha).await.expect("in use?"),
        "no row names it yet"
    );
    assert!(
        store.blob_in_use(&"12".repeat(32)).await.expect("in use?"),
        "the upload names it"
    );
    let thumbnail = |width, height, method: &str, sha: &str| ThumbnailRecord {
        media_id: "conformanceThumbs".to_owned(),
        width,
        height,
        method: method.to_owned(),
        content_type: "image/png".to_owned(),
        size: 77,
        sha256: sha.repeat(32),
    };
    assert!(
        store
            .thumbnail("conformanceThumbs", 32, 32, "crop")
            .await
            .expect("read")
            .is_none()
    );
    let crop = thumbnail(32, 32, "crop", "34");
    store.put_thumbnail(&crop).await.expect("put");
    store
        .put_thumbnail(&thumbnail(32, 32, "crop", "56"))
        .await
        .expect("a second put of the same key succeeds");
    let scale = thumbnail(320, 240, "scale", "78");
    store.put_thumbnail(&scale).await.expect("put");
    assert!(
        store.blob_in_use(&thumb_sha).await.expect("in use?"),
        "a thumbnail names it"
    );
    assert!(
        !store.blob_in_use(&"56".repeat(32)).await.expect("in use?"),
        "the losing put names nothing"
    );
    assert_eq!(
        store
            .thumbnail("conformanceThumbs", 32, 32, "crop")
            .await
            .expect("read"),
        Some(crop.clone()),
        "the first thumbnail stored for a key stays"
    );
    assert!(
        store
            .thumbnail("conformanceThumbs", 32, 32, "scale")
            .await
            .expect("read")
            .is_none()
    );
    assert_eq!(
        store.thumbnails("conformanceThumbs").await.expect("list"),
        vec![crop, scale]
    );
}

pub(super) async fn remote_media_is_kept_per_origin(store: &dyn Store) {
    let first = content(&"9a".repeat(32), 321);
    assert_eq!(
        store
            .remote_media("remote.test", "conformanceRemote")
            .await
            .expect("read"),
        None
    );
    store
        .put_remote_media("remote.test", "conformanceRemote", &first, 5_000)
        .await
        .expect("put");
    store
        .put_remote_media(
            "remote.test",
            "conformanceRemote",
            &content(&"9b".repeat(32), 1),
            6_000,
        )
        .await
        .expect("a second put of the same media succeeds");
    assert_eq!(
        store
            .remote_media("remote.test", "conformanceRemote")
            .await
            .expect("read"),
        Some(first),
        "the first put wins"
    );
    assert_eq!(
        store
            .remote_media("other.test", "conformanceRemote")
            .await
            .expect("read"),
        None,
        "the same media ID of another server is another media"
    );
    assert!(store.blob_in_use(&"9a".repeat(32)).await.expect("in use?"));
    assert!(!store.blob_in_use(&"9b".repeat(32)).await.expect("in use?"));

    // Past its lifetime it is forgotten, and its file is no longer in use;
    // what was fetched later stays.
    let later = content(&"9c".repeat(32), 123);
    store
        .put_remote_media("remote.test", "conformanceLater", &later, 9_000)
        .await
        .expect("put");
    assert_eq!(store.forget_remote_media(5_001).await.expect("forget"), 1);
    assert_eq!(
        store
            .remote_media("remote.test", "conformanceRemote")
            .await
            .expect("read"),
        None
    );
    assert!(!store.blob_in_use(&"9a".repeat(32)).await.expect("in use?"));
    assert!(
        store
            .remote_media("remote.test", "conformanceLater")
            .await
            .expect("read")
            .is_some()
    );
}

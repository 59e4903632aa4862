//! The store conformance suite on a fresh SQLite file.

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir =
        std::env::temp_dir().join(format!("myelin-sqlite-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("homeserver.db");
    let _ = std::fs::remove_file(&path);
    let store = myelin_store_sqlite::SqliteStore::open(&path)
        .await
        .expect("open");
    myelin_store::conformance::run_all(&store).await;
    // Reopening applies no migration twice and keeps the data.
    drop(store);
    let reopened = myelin_store_sqlite::SqliteStore::open(&path)
        .await
        .expect("reopen");
    assert!(
        myelin_store::AccountStore::user(&reopened, "@alice:test")
            .await
            .expect("read")
            .is_some()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Migration 12 indexes the events stored before it: written, the indexes
/// dropped, the migration run again.
#[tokio::test]
async fn relations_and_search_are_backfilled() {
    let dir = std::env::temp_dir().join(format!("myelin-sqlite-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("homeserver.db");
    let _ = std::fs::remove_file(&path);
    let store = myelin_store_sqlite::SqliteStore::open(&path)
        .await
        .expect("open");
    myelin_store::conformance::write_backfill_events(&store).await;
    drop(store);
    rusqlite::Connection::open(&path)
        .expect("raw open")
        .execute_batch(
            "DROP TABLE event_relations; DROP TABLE event_search;
             DELETE FROM schema_migrations WHERE version = 12;",
        )
        .expect("undo migration 12");
    let reopened = myelin_store_sqlite::SqliteStore::open(&path)
        .await
        .expect("reopen");
    myelin_store::conformance::check_backfilled(&reopened, true).await;
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

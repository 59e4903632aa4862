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

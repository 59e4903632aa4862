//! The store conformance suite on a fresh PostgreSQL database.
//!
//! Needs a server: `MYELIN_TEST_POSTGRES_URL` names a database whose user may
//! create databases (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! Each test creates its own database and drops it afterwards. Without the
//! variable the tests are reported as ignored (see `build.rs`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use myelin_store::{
    AccountStore, Direction, EventStore, PersistEvent, PersistOutcome, Store, TxnKey,
};
use myelin_store_postgres::PostgresStore;
use myelin_types::{StreamPosition, TimelinePoint};
use tokio_postgres::NoTls;

const URL_VAR: &str = "MYELIN_TEST_POSTGRES_URL";

fn admin_url() -> Option<String> {
    let url = std::env::var(URL_VAR).ok();
    if url.is_none() {
        println!("skipped: {URL_VAR} not set");
    }
    url
}

async fn connect_raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|index| index + 3) else {
        // key=value form: a later key wins.
        return format!("{url} dbname={database}");
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |index| scheme_end + index);
    format!("{}/{database}{query}", &base[..authority_end])
}

/// Runs `body` with the URL of a new, empty database, then drops the
/// database even when `body` panicked.
async fn with_fresh_database<F, Fut>(admin_url: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let name = format!(
        "myelin_conformance_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect_raw(admin_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    // A panic inside a task comes back as an error, so the drop below runs.
    let outcome = tokio::spawn(body(with_database(admin_url, &name))).await;
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .expect("drop database");
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn applied_migrations(url: &str) -> Vec<i64> {
    let client = connect_raw(url).await;
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn message(room_id: &str, n: usize, txn: Option<TxnKey>) -> PersistEvent {
    let event_id = format!("${room_id}-{n}");
    PersistEvent {
        pdu_json: format!(r#"{{"event_id":"{event_id}"}}"#),
        event_id,
        room_id: room_id.to_owned(),
        sender: "@s:test".to_owned(),
        event_type: "m.room.message".to_owned(),
        state_key: None,
        depth: n as i64 + 1,
        origin_server_ts: n as i64,
        prev_events: Vec::new(),
        membership: None,
        txn,
        redaction: None,
        redacted_on_arrival: None,
        new_room_version: None,
        push_actions: Vec::new(),
        fence: None,
        snapshots: None,
        resolved_state: None,
        opens_gap: false,
    }
}

/// Concurrent writers get distinct, gapless positions, and a reader never
/// sees a position before every event up to it is visible.
async fn concurrent_positions_are_gapless(store: &Arc<PostgresStore>) {
    const WRITERS: i64 = 16;
    let before = store.max_position().await.expect("max");
    let reader = {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            loop {
                let seen = store.max_position().await.expect("max");
                let visible = store
                    .room_events(
                        "!many:test",
                        TimelinePoint::of_stream(before),
                        Some(TimelinePoint::of_stream(seen)),
                        Direction::Forward,
                        100,
                    )
                    .await
                    .expect("forward");
                assert_eq!(visible.len() as i64, seen.0 - before.0, "at {seen}");
                if seen.0 - before.0 == WRITERS {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS as usize)
        .map(|n| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.persist_event(message("!many:test", n, None)).await })
        })
        .collect();
    for writer in writers {
        let outcome = writer.await.expect("task").expect("persist");
        assert!(
            matches!(outcome, PersistOutcome::Persisted(_)),
            "{outcome:?}"
        );
    }
    reader.await.expect("reader");
    let after = store.max_position().await.expect("max");
    assert_eq!(after.0 - before.0, WRITERS);
    let events = store
        .room_events(
            "!many:test",
            TimelinePoint::of_stream(before),
            Some(TimelinePoint::of_stream(after)),
            Direction::Forward,
            100,
        )
        .await
        .expect("forward");
    let positions: Vec<i64> = events.iter().map(|event| event.position.0).collect();
    let expected: Vec<i64> = (before.0 + 1..=after.0).collect();
    assert_eq!(positions, expected);
}

/// A send retried while the first attempt is still writing is reported as
/// a duplicate of whichever attempt won.
async fn racing_txn_ids_dedupe(store: &Arc<PostgresStore>) {
    let txn = TxnKey {
        user_id: "@s:test".into(),
        device_id: "RACE".into(),
        txn_id: "t1".into(),
    };
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let store = Arc::clone(store);
            let event = message("!race:test", n, Some(txn.clone()));
            tokio::spawn(async move { store.persist_event(event).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("persist"));
    }
    let winner = store
        .txn_event_id(&txn)
        .await
        .expect("txn")
        .expect("one attempt won");
    let persisted = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, PersistOutcome::Persisted(_)))
        .count();
    assert_eq!(persisted, 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let PersistOutcome::DuplicateTxn { event_id } = outcome {
            assert_eq!(event_id, &winner);
        }
    }
    let stored = store
        .room_events(
            "!race:test",
            TimelinePoint::of_stream(StreamPosition::ZERO),
            None,
            Direction::Forward,
            100,
        )
        .await
        .expect("forward");
    assert_eq!(stored.len(), 1, "losers wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(myelin_test_postgres),
    ignore = "set MYELIN_TEST_POSTGRES_URL to run"
)]
async fn postgres_store_conforms() {
    let Some(admin_url) = admin_url() else {
        return;
    };
    with_fresh_database(&admin_url, |url| async move {
        let store = Arc::new(PostgresStore::connect(&url, 1, 4).await.expect("connect"));
        myelin_store::conformance::run_all(store.as_ref()).await;
        concurrent_positions_are_gapless(&store).await;
        racing_txn_ids_dedupe(&store).await;
        let position = store.max_position().await.expect("max");
        drop(store);

        // Connecting again applies no migration twice and keeps the data.
        let reopened = PostgresStore::connect(&url, 1, 4).await.expect("reconnect");
        assert!(reopened.user("@alice:test").await.expect("read").is_some());
        assert_eq!(reopened.max_position().await.expect("max"), position);
        drop(reopened);
        assert_eq!(applied_migrations(&url).await, every_migration());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(myelin_test_postgres),
    ignore = "set MYELIN_TEST_POSTGRES_URL to run"
)]
async fn racing_connects_both_migrate() {
    let Some(admin_url) = admin_url() else {
        return;
    };
    with_fresh_database(&admin_url, |url| async move {
        let (first, second) = tokio::join!(
            PostgresStore::connect(&url, 1, 2),
            PostgresStore::connect(&url, 1, 2)
        );
        let (first, second) = (first.expect("first"), second.expect("second"));
        first.ping().await.expect("ping");
        second.ping().await.expect("ping");
        drop((first, second));
        assert_eq!(applied_migrations(&url).await, every_migration());
    })
    .await;
}

/// The versions of every file in `migrations/postgres`, in order.
fn every_migration() -> Vec<i64> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    let mut versions: Vec<i64> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter_map(|entry| {
            entry
                .ok()?
                .file_name()
                .to_str()?
                .split('_')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    versions.sort_unstable();
    versions
}

/// Migration 12 indexes the events stored before it: written, the indexes
/// dropped, the migration run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_and_search_are_backfilled() {
    let Some(admin_url) = admin_url() else {
        return;
    };
    with_fresh_database(&admin_url, |url| async move {
        let store = PostgresStore::connect(&url, 1, 2).await.expect("connect");
        myelin_store::conformance::write_backfill_events(&store).await;
        drop(store);
        connect_raw(&url)
            .await
            .batch_execute(
                "DROP TABLE event_relations; DROP TABLE event_search;
                 DELETE FROM schema_migrations WHERE version = 12;",
            )
            .await
            .expect("undo migration 12");
        let reopened = PostgresStore::connect(&url, 1, 2).await.expect("reconnect");
        myelin_store::conformance::check_backfilled(&reopened, false).await;
    })
    .await;
}

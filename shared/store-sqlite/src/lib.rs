//! The embedded SQLite implementation of `myelin_store::Store`.
//!
//! Invariant: the only crate that links rusqlite. One writer connection
//! serialises every write (SQLite allows one writer anyway, and it keeps
//! stream positions in commit order); readers use their own connections in
//! WAL mode. All calls run on blocking threads, never on the async ones.

mod account_data;
mod accounts;
mod aliases;
mod counters;
mod devices;
mod directory;
mod events;
mod key_backup;
mod keys;
mod leases;
mod media;
mod migrations;
mod notifications;
mod outbox;
mod presence;
mod pushers;
mod receipts;
mod relations;
mod reports;
mod server_keys;
mod snapshots;
mod to_device;
mod typing;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use myelin_store::{Store, StoreError, StoreResult};
use rusqlite::Connection;

const READER_COUNT: usize = 4;

pub struct SqliteStore {
    /// Leases are process-wide: one process owns an SQLite file.
    leases: leases::LocalLeases,
    writer: Arc<Mutex<Connection>>,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let store = SqliteStore::open_connections(path).await?;
        tokio::spawn(index_search_behind(Arc::downgrade(&store.writer)));
        Ok(store)
    }

    async fn open_connections(path: &Path) -> StoreResult<SqliteStore> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut writer = connect(&path)?;
            migrations::apply(&mut writer)?;
            let readers = (0..READER_COUNT)
                .map(|_| connect(&path).map(|conn| Arc::new(Mutex::new(conn))))
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(SqliteStore {
                leases: leases::LocalLeases::default(),
                writer: Arc::new(Mutex::new(writer)),
                readers,
                next_reader: AtomicUsize::new(0),
            })
        })
        .await
        .map_err(|join| StoreError::Unavailable(join.to_string()))?
    }

    /// Runs a read on one of the reader connections: on this thread when
    /// that connection is free, since most reads take microseconds and a
    /// hand-off to the blocking pool and back costs more than they do;
    /// otherwise on the blocking pool. Reads that may scan much use
    /// [`SqliteStore::read_in_pool`].
    async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = self.next_reader();
        if let Ok(conn) = reader.try_lock() {
            return work(&conn).map_err(map_error);
        }
        run_blocking(move || {
            let conn = reader.lock().map_err(|_| poisoned())?;
            work(&conn).map_err(map_error)
        })
        .await
    }

    /// A read that may scan much (search, a stretch of the log, the state
    /// at a point): always on the blocking pool, so it never holds up the
    /// threads that serve requests.
    async fn read_in_pool<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let reader = self.next_reader();
        run_blocking(move || {
            let conn = reader.lock().map_err(|_| poisoned())?;
            work(&conn).map_err(map_error)
        })
        .await
    }

    fn next_reader(&self) -> Arc<Mutex<Connection>> {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        Arc::clone(&self.readers[index])
    }

    /// Runs a write inside one immediate transaction on the writer.
    async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        write_on(Arc::clone(&self.writer), work).await
    }
}

/// A write inside one immediate transaction on `writer` (also for lease
/// sessions, which hold the writer rather than the store).
pub(crate) async fn write_on<T, F>(writer: Arc<Mutex<Connection>>, work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + 'static,
{
    run_blocking(move || {
        let mut conn = writer.lock().map_err(|_| poisoned())?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_error)?;
        let result = work(&tx)?;
        tx.commit().map_err(map_error)?;
        Ok(result)
    })
    .await
}

/// How often the full-text index catches up with the events in the
/// background (a search also catches it up first).
const SEARCH_INDEX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Fills the full-text index behind the events until the store is gone.
async fn index_search_behind(writer: std::sync::Weak<Mutex<Connection>>) {
    let mut tick = tokio::time::interval(SEARCH_INDEX_INTERVAL);
    loop {
        tick.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        loop {
            match write_on(Arc::clone(&writer), relations::index_search_batch).await {
                Ok(read) if read == relations::SEARCH_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "cannot extend the full-text index");
                    break;
                }
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1")
                .and_then(|mut statement| statement.query_row([], |_| Ok(())))
        })
        .await
    }
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(map_error)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_error)?;
    // NORMAL is durable across process crashes in WAL mode; only an OS crash
    // can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(map_error)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(map_error)?;
    // Every statement the store runs stays prepared on every connection.
    conn.set_prepared_statement_cache_capacity(128);
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(map_error)?;
    Ok(conn)
}

async fn run_blocking<T, F>(work: F) -> StoreResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> StoreResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| StoreError::Unavailable(join.to_string()))?
}

fn poisoned() -> StoreError {
    StoreError::Unavailable("a database connection was poisoned by a panic".to_owned())
}

/// The one place rusqlite errors become store errors.
pub(crate) fn map_error(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match &error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(error.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(error.to_string())
            }
            _ => StoreError::Unavailable(error.to_string()),
        },
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Unavailable(error.to_string()),
    }
}

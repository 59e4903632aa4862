//! The PostgreSQL implementation of `myelin_store::Store`.
//!
//! Invariant: the only crate that links tokio-postgres and deadpool-postgres.
//! Every call takes a connection from one deadpool pool; writes that touch
//! more than one row run in one transaction. Stream positions come from a
//! one-row counter taken last in the writing transaction, so they become
//! visible in order (see `events.rs`).

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
mod pipeline;
mod presence;
mod pushers;
mod receipts;
mod relations;
mod reports;
mod server_keys;
mod snapshots;
mod to_device;
mod typing;

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Transaction};
use myelin_store::{Store, StoreError, StoreResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};

/// How long a call waits for a free connection before it reports the store
/// unavailable, rather than queueing forever behind a stuck pool.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Query parameters as tokio-postgres takes them.
pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

pub struct PostgresStore {
    pool: Pool,
    /// For the dedicated connections that hold leases, outside the pool.
    connect_config: tokio_postgres::Config,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…` or `key=value`
    /// form, without TLS) and applies the missing migrations.
    ///
    /// The pool holds at most `pool_max` connections (at least one). deadpool
    /// keeps no minimum: `pool_min` connections are opened here, so a bad URL
    /// fails at start and the first requests skip the handshake, but the pool
    /// does not top them up again once they are closed.
    pub async fn connect(
        url: &str,
        pool_min: usize,
        pool_max: usize,
    ) -> StoreResult<PostgresStore> {
        let config: tokio_postgres::Config = url.parse().map_err(map_error)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool_max = pool_max.max(1);
        let pool = Pool::builder(manager)
            .max_size(pool_max)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CREATE_TIMEOUT))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(map_error)?;
        migrations::apply(&pool).await?;
        let mut warm = Vec::with_capacity(pool_min.min(pool_max));
        for _ in 0..pool_min.min(pool_max) {
            warm.push(pool.get().await.map_err(map_error)?);
        }
        // Dropping the objects returns them to the pool as idle connections.
        drop(warm);
        Ok(PostgresStore {
            pool,
            connect_config: config,
        })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(map_error)
    }

    /// Runs one statement outside a transaction; returns the rows changed.
    async fn execute(&self, sql: &str, params: &Params<'_>) -> StoreResult<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        client.execute(&statement, params).await.map_err(map_error)
    }

    /// Runs one query and converts every row.
    async fn query<T>(
        &self,
        sql: &str,
        params: &Params<'_>,
        convert: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        let rows = client.query(&statement, params).await.map_err(map_error)?;
        rows.iter().map(convert).collect()
    }

    /// Runs one query that returns at most one row.
    async fn query_opt<T>(
        &self,
        sql: &str,
        params: &Params<'_>,
        convert: fn(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        let row = client
            .query_opt(&statement, params)
            .await
            .map_err(map_error)?;
        row.as_ref().map(convert).transpose()
    }
}

/// Runs one statement inside a transaction; returns the rows changed.
pub(crate) async fn tx_execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
) -> StoreResult<u64> {
    let statement = tx.prepare_cached(sql).await.map_err(map_error)?;
    tx.execute(&statement, params).await.map_err(map_error)
}

/// Runs one query inside a transaction and converts every row.
pub(crate) async fn tx_query<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
    convert: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let statement = tx.prepare_cached(sql).await.map_err(map_error)?;
    let rows = tx.query(&statement, params).await.map_err(map_error)?;
    rows.iter().map(convert).collect()
}

/// Runs one query inside a transaction that returns at most one row.
pub(crate) async fn tx_query_opt<T>(
    tx: &Transaction<'_>,
    sql: &str,
    params: &Params<'_>,
    convert: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let statement = tx.prepare_cached(sql).await.map_err(map_error)?;
    let row = tx.query_opt(&statement, params).await.map_err(map_error)?;
    row.as_ref().map(convert).transpose()
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await.map_err(map_error)?;
        Ok(())
    }
}

/// Reads one column, reporting a value of the wrong type as corrupt data.
pub(crate) fn get<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index)
        .map_err(|error| map_error(EngineError::Row(error)))
}

/// `NotFound` when a statement that should change one row changed none.
pub(crate) fn changed_one(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// What the engine reported, by where it came from.
#[derive(Debug)]
pub(crate) enum EngineError {
    /// A statement, the connection or the URL failed.
    Query(tokio_postgres::Error),
    /// No connection could be taken from the pool.
    Pool(deadpool_postgres::PoolError),
    /// The pool could not be built.
    Build(deadpool_postgres::BuildError),
    /// A column did not convert to the Rust type the schema promises.
    Row(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for EngineError {
    fn from(error: tokio_postgres::Error) -> Self {
        EngineError::Query(error)
    }
}

impl From<deadpool_postgres::PoolError> for EngineError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        EngineError::Pool(error)
    }
}

impl From<deadpool_postgres::BuildError> for EngineError {
    fn from(error: deadpool_postgres::BuildError) -> Self {
        EngineError::Build(error)
    }
}

/// The one place engine errors become store errors.
pub(crate) fn map_error(error: impl Into<EngineError>) -> StoreError {
    // tokio-postgres keeps the server's message in the source, not in Display.
    let describe = |error: &tokio_postgres::Error| match error.source() {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    };
    match error.into() {
        EngineError::Query(error) => {
            let code = error.code();
            if code == Some(&SqlState::UNIQUE_VIOLATION) {
                StoreError::Conflict(describe(&error))
            } else if code == Some(&SqlState::DATA_CORRUPTED)
                || code == Some(&SqlState::INDEX_CORRUPTED)
            {
                StoreError::Corrupt(describe(&error))
            } else {
                StoreError::Unavailable(describe(&error))
            }
        }
        EngineError::Pool(deadpool_postgres::PoolError::Backend(error)) => {
            StoreError::Unavailable(describe(&error))
        }
        EngineError::Pool(error) => StoreError::Unavailable(error.to_string()),
        EngineError::Build(error) => StoreError::Unavailable(error.to_string()),
        EngineError::Row(error) => StoreError::Corrupt(describe(&error)),
    }
}

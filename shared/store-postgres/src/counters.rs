//! The counters of the streams other than room events (`stream_counters`).

use deadpool_postgres::Transaction;
use myelin_store::{StoreError, StoreResult};
use myelin_types::StreamPosition;

use crate::{PostgresStore, get, tx_query_opt};

/// Takes the stream's next position inside `tx`. The row lock it takes is
/// held until `tx` ends, so writers of one stream commit in position order;
/// call it as late in the transaction as possible.
pub(crate) async fn take_position(
    tx: &Transaction<'_>,
    stream: &str,
) -> StoreResult<StreamPosition> {
    tx_query_opt(
        tx,
        "UPDATE stream_counters SET position = position + 1 WHERE stream = $1
         RETURNING position",
        &[&stream],
        |row| get(row, 0),
    )
    .await?
    .map(StreamPosition)
    .ok_or_else(|| StoreError::Corrupt(format!("stream_counters has no {stream} row")))
}

/// Takes `count` positions of the stream at once (see [`take_position`]);
/// returns the highest, the others being the `count - 1` below it.
pub(crate) async fn take_positions(
    tx: &Transaction<'_>,
    stream: &str,
    count: usize,
) -> StoreResult<StreamPosition> {
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    tx_query_opt(
        tx,
        "UPDATE stream_counters SET position = position + $2 WHERE stream = $1
         RETURNING position",
        &[&stream, &count],
        |row| get(row, 0),
    )
    .await?
    .map(StreamPosition)
    .ok_or_else(|| StoreError::Corrupt(format!("stream_counters has no {stream} row")))
}

/// The stream's last committed position: every lower one has committed too.
pub(crate) async fn counter_position(
    store: &PostgresStore,
    stream: &str,
) -> StoreResult<StreamPosition> {
    store
        .query_opt(
            "SELECT position FROM stream_counters WHERE stream = $1",
            &[&stream],
            |row| get(row, 0),
        )
        .await?
        .map(StreamPosition)
        .ok_or_else(|| StoreError::Corrupt(format!("stream_counters has no {stream} row")))
}

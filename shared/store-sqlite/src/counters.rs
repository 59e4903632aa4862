//! The counters of the streams other than room events (`stream_counters`).

use myelin_store::{StoreError, StoreResult};
use myelin_types::StreamPosition;
use rusqlite::{Connection, OptionalExtension};

use crate::map_error;

/// Takes the stream's next position inside the writer's transaction; the
/// single writer commits positions in order.
pub(crate) fn take_position(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
) -> StoreResult<StreamPosition> {
    tx.prepare_cached(
        "UPDATE stream_counters SET position = position + 1 WHERE stream = ?1
         RETURNING position",
    )
    .and_then(|mut statement| statement.query_row([stream], |row| row.get(0)).optional())
    .map_err(map_error)?
    .map(StreamPosition)
    .ok_or_else(|| StoreError::Corrupt(format!("stream_counters has no {stream} row")))
}

/// The stream's last committed position.
pub(crate) fn counter_position(conn: &Connection, stream: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT position FROM stream_counters WHERE stream = ?1")
        .and_then(|mut statement| statement.query_row([stream], |row| row.get(0)))
}

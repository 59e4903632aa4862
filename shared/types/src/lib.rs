//! Plain value types shared by every Myelin crate.
//!
//! Invariant: no IO, no async, no outside technology. Everything here is a
//! value that can be compared, printed and parsed.

mod partition;
mod position;

pub use partition::{PARTITION_COUNT, Partition};
pub use position::{StreamPosition, StreamToken, SyncToken, TimelinePoint, TokenParseError};

/// Milliseconds since the Unix epoch, as Matrix timestamps are.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

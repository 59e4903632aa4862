//! The streams' current positions, read from the store once for all the
//! long-polls that a change wakes together rather than once each.
//!
//! A snapshot may stand in for a fresh read only while no bell has rung
//! since its read began: every bell bumps the generation before it wakes
//! anyone, and bells ring after the change is stored, so a long-poll woken
//! by a bell never sees a snapshot older than the change. A snapshot also
//! expires after a second, for changes whose bell was lost. Requests that
//! must see their own writes at once (no long-poll) read fresh.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use myelin_store::{Store, StoreResult};
use myelin_types::{StreamPosition, SyncToken};

/// How long a snapshot serves without any bell.
const LONGEST_REUSE: Duration = Duration::from_secs(1);

/// The stored streams' positions (typing lives in memory and is read apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredPositions {
    pub(crate) events: StreamPosition,
    pub(crate) account_data: StreamPosition,
    pub(crate) receipts: StreamPosition,
    pub(crate) presence: StreamPosition,
    pub(crate) to_device: StreamPosition,
    pub(crate) device_lists: StreamPosition,
}

struct Snapshot {
    generation: u64,
    read_at: Instant,
    positions: StoredPositions,
}

#[derive(Default)]
pub(crate) struct Positions {
    generation: AtomicU64,
    last: Mutex<Option<Snapshot>>,
    /// One store read at a time; those waiting take its result.
    reading: tokio::sync::Mutex<()>,
}

async fn read(store: &dyn Store) -> StoreResult<StoredPositions> {
    Ok(StoredPositions {
        events: store.max_position().await?,
        account_data: store.max_account_data_position().await?,
        receipts: store.max_receipt_position().await?,
        presence: store.max_presence_position().await?,
        to_device: store.max_to_device_position().await?,
        device_lists: store.max_device_list_position().await?,
    })
}

impl Positions {
    /// A bell rang: snapshots taken before now no longer stand in.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn usable(&self, generation: u64) -> Option<StoredPositions> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        last.as_ref()
            .filter(|snapshot| {
                snapshot.generation == generation && snapshot.read_at.elapsed() < LONGEST_REUSE
            })
            .map(|snapshot| snapshot.positions)
    }

    fn keep(&self, generation: u64, positions: StoredPositions) {
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Snapshot {
            generation,
            read_at: Instant::now(),
            positions,
        });
    }

    /// Read from the store now (and kept for others).
    pub(crate) async fn fresh(&self, store: &dyn Store) -> StoreResult<StoredPositions> {
        let generation = self.generation.load(Ordering::SeqCst);
        let positions = read(store).await?;
        self.keep(generation, positions);
        Ok(positions)
    }

    /// A snapshot no bell has outdated, or a fresh read shared with the
    /// requests that ask meanwhile.
    pub(crate) async fn shared(&self, store: &dyn Store) -> StoreResult<StoredPositions> {
        let generation = self.generation.load(Ordering::SeqCst);
        if let Some(positions) = self.usable(generation) {
            return Ok(positions);
        }
        let _reading = self.reading.lock().await;
        // Someone may have read while this request waited its turn.
        if let Some(positions) = self.usable(generation) {
            return Ok(positions);
        }
        self.fresh(store).await
    }
}

impl StoredPositions {
    pub(crate) fn with_typing(self, typing: StreamPosition) -> SyncToken {
        SyncToken {
            events: self.events,
            account_data: self.account_data,
            receipts: self.receipts,
            typing,
            presence: self.presence,
            to_device: self.to_device,
            device_lists: self.device_lists,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(events: i64) -> StoredPositions {
        StoredPositions {
            events: StreamPosition(events),
            account_data: StreamPosition(0),
            receipts: StreamPosition(0),
            presence: StreamPosition(0),
            to_device: StreamPosition(0),
            device_lists: StreamPosition(0),
        }
    }

    #[test]
    fn a_bell_outdates_every_snapshot_taken_before_it() {
        let positions = Positions::default();
        let generation = positions.generation.load(Ordering::SeqCst);
        positions.keep(generation, at(5));
        assert_eq!(positions.usable(generation), Some(at(5)));
        positions.changed();
        let now = positions.generation.load(Ordering::SeqCst);
        assert_eq!(positions.usable(now), None);
        // A read that began before the bell is not kept as current.
        positions.keep(generation, at(6));
        assert_eq!(positions.usable(now), None);
        positions.keep(now, at(7));
        assert_eq!(positions.usable(now), Some(at(7)));
    }
}

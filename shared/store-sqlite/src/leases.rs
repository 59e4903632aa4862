//! Leases within the one process that owns the SQLite file, and the
//! instance heartbeat table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use myelin_store::{Fence, LeaseSession, LeaseStore, StoreResult};
use rusqlite::{Connection, params};

use crate::{SqliteStore, map_error, write_on};

/// Lease key -> the session holding it.
#[derive(Default, Clone)]
pub(crate) struct LocalLeases {
    held: Arc<Mutex<HashMap<i64, u64>>>,
    next_session: Arc<AtomicU64>,
}

struct LocalSession {
    id: u64,
    leases: LocalLeases,
    /// The store's writer, for the fencing epochs in `lease_fences`.
    writer: Arc<Mutex<Connection>>,
    /// Key -> the epoch of the fence this session got for it.
    fences: Mutex<HashMap<i64, i64>>,
}

/// Moves a lease key's fencing epoch on; the new value is the new holder's.
const BUMP_FENCE: &str = "INSERT INTO lease_fences (lease_key, epoch) VALUES (?1, 1)
     ON CONFLICT (lease_key) DO UPDATE SET epoch = lease_fences.epoch + 1
     RETURNING epoch";

impl LocalSession {
    fn fences(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.fences
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn give_up(&self, key: i64) {
        self.fences().remove(&key);
        let mut held = self.held();
        if held.get(&key) == Some(&self.id) {
            held.remove(&key);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i64, u64>> {
        self.leases
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl LeaseSession for LocalSession {
    async fn try_acquire(&self, key: i64) -> StoreResult<Option<Fence>> {
        if let Some(&epoch) = self.fences().get(&key) {
            return Ok(Some(Fence { key, epoch }));
        }
        if *self.held().entry(key).or_insert(self.id) != self.id {
            return Ok(None);
        }
        let bumped = write_on(Arc::clone(&self.writer), move |tx| {
            tx.prepare_cached(BUMP_FENCE)
                .and_then(|mut statement| statement.query_row([key], |row| row.get(0)))
                .map_err(map_error)
        })
        .await;
        match bumped {
            Ok(epoch) => {
                self.fences().insert(key, epoch);
                Ok(Some(Fence { key, epoch }))
            }
            Err(error) => {
                self.give_up(key);
                Err(error)
            }
        }
    }

    async fn release(&self, key: i64) -> StoreResult<()> {
        self.give_up(key);
        Ok(())
    }

    async fn check(&self) -> StoreResult<()> {
        Ok(())
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        let id = self.id;
        self.held().retain(|_, holder| *holder != id);
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn lease_session(&self) -> StoreResult<Box<dyn LeaseSession>> {
        let id = self.leases.next_session.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(LocalSession {
            id,
            leases: self.leases.clone(),
            writer: Arc::clone(&self.writer),
            fences: Mutex::default(),
        }))
    }

    async fn heartbeat(&self, group: &str, instance: &str, ttl: Duration) -> StoreResult<usize> {
        let (group, instance) = (group.to_owned(), instance.to_owned());
        let now = myelin_types::now_millis();
        let expires_at = now + ttl.as_millis() as i64;
        self.write(move |tx| {
            tx.prepare_cached("INSERT INTO group_instances (group_name, instance_id, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (group_name, instance_id) DO UPDATE SET expires_at = excluded.expires_at").and_then(|mut statement| statement.execute(params![group, instance, expires_at],))
            .map_err(map_error)?;
            tx.prepare_cached("DELETE FROM group_instances WHERE group_name = ?1 AND expires_at < ?2").and_then(|mut statement| statement.execute(params![group, now]))
                .map_err(map_error)?;
            let live: i64 = tx.prepare_cached("SELECT COUNT(*) FROM group_instances WHERE group_name = ?1").and_then(|mut statement| statement.query_row([&group], |row| row.get(0)))
                .map_err(map_error)?;
            Ok(live as usize)
        })
        .await
    }

    async fn leave_group(&self, group: &str, instance: &str) -> StoreResult<()> {
        let keys = [group.to_owned(), instance.to_owned()];
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM group_instances WHERE group_name = ?1 AND instance_id = ?2",
            )
            .and_then(|mut statement| statement.execute(keys))
            .map_err(map_error)?;
            Ok(())
        })
        .await
    }
}

/// Refuses a write under a fence whose lease moved on. The one writer
/// serialises this check with every epoch bump.
pub(crate) fn check_fence(
    tx: &rusqlite::Transaction<'_>,
    fence: myelin_store::Fence,
) -> myelin_store::StoreResult<()> {
    use rusqlite::OptionalExtension;
    let epoch: Option<i64> = tx
        .prepare_cached("SELECT epoch FROM lease_fences WHERE lease_key = ?1")
        .and_then(|mut statement| statement.query_row([fence.key], |row| row.get(0)))
        .optional()
        .map_err(crate::map_error)?;
    if epoch != Some(fence.epoch) {
        return Err(myelin_store::StoreError::Fenced);
    }
    Ok(())
}

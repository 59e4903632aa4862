//! Leases within the one process that owns the SQLite file, and the
//! instance heartbeat table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use myelin_store::{LeaseSession, LeaseStore, StoreResult};
use rusqlite::params;

use crate::{SqliteStore, map_error};

/// Lease key -> the session holding it.
#[derive(Default, Clone)]
pub(crate) struct LocalLeases {
    held: Arc<Mutex<HashMap<i64, u64>>>,
    next_session: Arc<AtomicU64>,
}

struct LocalSession {
    id: u64,
    leases: LocalLeases,
}

impl LocalSession {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i64, u64>> {
        self.leases
            .held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl LeaseSession for LocalSession {
    async fn try_acquire(&self, key: i64) -> StoreResult<bool> {
        let mut held = self.held();
        Ok(*held.entry(key).or_insert(self.id) == self.id)
    }

    async fn release(&self, key: i64) -> StoreResult<()> {
        let mut held = self.held();
        if held.get(&key) == Some(&self.id) {
            held.remove(&key);
        }
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

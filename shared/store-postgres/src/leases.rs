//! Leases as PostgreSQL session advisory locks on a dedicated connection:
//! when the process dies or the connection drops, the server releases them.

use std::time::Duration;

use async_trait::async_trait;
use myelin_store::{Fence, LeaseSession, LeaseStore, StoreError, StoreResult};
use tokio_postgres::NoTls;

use crate::{PostgresStore, map_error};

/// A lost connection must be noticed well within a lease's useful life.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Moves a lease key's fencing epoch on; the new value is the new holder's.
const BUMP_FENCE: &str = "INSERT INTO lease_fences (lease_key, epoch) VALUES ($1, 1)
     ON CONFLICT (lease_key) DO UPDATE SET epoch = lease_fences.epoch + 1
     RETURNING epoch";

struct AdvisorySession {
    client: tokio_postgres::Client,
    /// Key -> the epoch of its fence. PostgreSQL counts repeated locks, so
    /// each key is locked once and one release frees it.
    held: std::sync::Mutex<std::collections::HashMap<i64, i64>>,
    connection_task: tokio::task::JoinHandle<()>,
}

impl Drop for AdvisorySession {
    fn drop(&mut self) {
        // Closing the connection releases every lock it held.
        self.connection_task.abort();
    }
}

impl AdvisorySession {
    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, i64>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl LeaseSession for AdvisorySession {
    async fn try_acquire(&self, key: i64) -> StoreResult<Option<Fence>> {
        if let Some(&epoch) = self.held().get(&key) {
            return Ok(Some(Fence { key, epoch }));
        }
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(map_error)?;
        let acquired: bool = row.try_get(0).map_err(map_error)?;
        if !acquired {
            return Ok(None);
        }
        // Waits for writes still in flight under the previous epoch (they
        // hold the fence row FOR SHARE), then shuts out any that come later.
        let bumped = match self.client.query_one(BUMP_FENCE, &[&key]).await {
            Ok(row) => row.try_get::<_, i64>(0).map_err(map_error),
            Err(error) => Err(map_error(error)),
        };
        match bumped {
            Ok(epoch) => {
                self.held().insert(key, epoch);
                Ok(Some(Fence { key, epoch }))
            }
            Err(error) => {
                let _ = self
                    .client
                    .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                    .await;
                Err(error)
            }
        }
    }

    async fn release(&self, key: i64) -> StoreResult<()> {
        if self.held().remove(&key).is_some() {
            self.client
                .query_one("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map_err(map_error)?;
        }
        Ok(())
    }

    async fn check(&self) -> StoreResult<()> {
        if self.client.is_closed() || self.connection_task.is_finished() {
            return Err(StoreError::Unavailable(
                "lease connection closed".to_owned(),
            ));
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(map_error(error)),
            Err(_) => Err(StoreError::Unavailable(
                "lease connection does not answer".to_owned(),
            )),
        }
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn lease_session(&self) -> StoreResult<Box<dyn LeaseSession>> {
        let (client, connection) = self
            .connect_config
            .connect(NoTls)
            .await
            .map_err(map_error)?;
        let connection_task = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "lease connection ended");
            }
        });
        // A fence bump waits for writes in flight under the old epoch; one
        // stuck behind a partition must not stall the lease loop for good.
        client
            .batch_execute("SET lock_timeout = '5s'")
            .await
            .map_err(map_error)?;
        Ok(Box::new(AdvisorySession {
            client,
            held: Default::default(),
            connection_task,
        }))
    }

    async fn heartbeat(&self, group: &str, instance: &str, ttl: Duration) -> StoreResult<usize> {
        let now = myelin_types::now_millis();
        let expires_at = now + ttl.as_millis() as i64;
        self.execute(
            "INSERT INTO group_instances (group_name, instance_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (group_name, instance_id) DO UPDATE SET expires_at = excluded.expires_at",
            &[&group, &instance, &expires_at],
        )
        .await?;
        self.execute(
            "DELETE FROM group_instances WHERE group_name = $1 AND expires_at < $2",
            &[&group, &now],
        )
        .await?;
        let live: Vec<i64> = self
            .query(
                "SELECT COUNT(*) FROM group_instances WHERE group_name = $1",
                &[&group],
                |row| crate::get(row, 0),
            )
            .await?;
        Ok(live.first().copied().unwrap_or(0) as usize)
    }

    async fn leave_group(&self, group: &str, instance: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM group_instances WHERE group_name = $1 AND instance_id = $2",
            &[&group, &instance],
        )
        .await
        .map(|_| ())
    }
}

/// Refuses a write under a fence whose lease moved on. FOR SHARE until
/// commit: a new holder's epoch bump waits for this write, and a write
/// after the bump sees the new epoch. (Not FOR KEY SHARE: that does not
/// conflict with an update of a non-key column, so the bump would not
/// wait.)
pub(crate) async fn check_fence(
    tx: &deadpool_postgres::Transaction<'_>,
    fence: myelin_store::Fence,
) -> myelin_store::StoreResult<()> {
    let statement = tx.prepare_cached(FENCE_EPOCH).await.map_err(map_error)?;
    let rows = tx
        .query(&statement, &[&fence.key])
        .await
        .map_err(map_error)?;
    fence_holds(&rows, fence)
}

const FENCE_EPOCH: &str = "SELECT epoch FROM lease_fences WHERE lease_key = $1 FOR SHARE";

/// Queues the check of [`check_fence`]; [`fence_holds`] reads its answer.
pub(crate) fn queue_fence_check(
    pipeline: &mut crate::pipeline::Pipeline<'_>,
    fence: myelin_store::Fence,
) -> crate::pipeline::Slot {
    pipeline.push(FENCE_EPOCH, crate::pipeline::params![fence.key])
}

pub(crate) fn fence_holds(
    rows: &[tokio_postgres::Row],
    fence: myelin_store::Fence,
) -> myelin_store::StoreResult<()> {
    let epoch: Option<i64> = rows.first().map(|row| crate::get(row, 0)).transpose()?;
    if epoch != Some(fence.epoch) {
        return Err(myelin_store::StoreError::Fenced);
    }
    Ok(())
}

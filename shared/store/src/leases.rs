//! Exclusive ownership of numbered resources (room partitions) by one
//! process at a time, and the count of live processes sharing them.

use std::time::Duration;

use async_trait::async_trait;

use crate::StoreResult;

/// Proof of holding a lease, taken when it was acquired: a write made under
/// it is refused once anyone has acquired the lease again since (a fencing
/// token), so a writer that lost its lease without noticing cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub key: i64,
    /// Grows by one with every acquisition of `key`.
    pub epoch: i64,
}

/// A connection-bound set of leases: every lease dies with the session, so
/// a crashed or cut-off process stops owning anything at once.
#[async_trait]
pub trait LeaseSession: Send + Sync {
    /// Takes the lease if nobody holds it and returns its fence; `None` when
    /// another session holds it. Asking again for a lease this session
    /// holds returns the fence it already has.
    async fn try_acquire(&self, key: i64) -> StoreResult<Option<Fence>>;

    /// Gives the lease back; releasing one not held is not an error.
    async fn release(&self, key: i64) -> StoreResult<()>;

    /// `Err` when the session is lost, and with it every lease it held.
    async fn check(&self) -> StoreResult<()>;
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn lease_session(&self) -> StoreResult<Box<dyn LeaseSession>>;

    /// Records that `instance` of `group` is alive for `ttl`, forgets
    /// instances whose time ran out, and returns how many are alive.
    async fn heartbeat(&self, group: &str, instance: &str, ttl: Duration) -> StoreResult<usize>;

    /// Removes `instance` from `group` at once (clean shutdown).
    async fn leave_group(&self, group: &str, instance: &str) -> StoreResult<()>;
}

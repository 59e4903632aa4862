//! The one error type of the storage layer.

/// What can go wrong in a store call, independent of the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness rule would be broken (user exists, alias taken).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The engine cannot be reached or is overloaded; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The write was made under a lease that has since passed to another
    /// holder (see `Fence`); nothing was written.
    #[error("fenced: the lease this write relied on has passed to another holder")]
    Fenced,
    /// Stored data is not what the schema promises.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

//! The lifecycle every Myelin binary shares: load the config, start tracing
//! and metrics, open the store and the bus the config names, build the
//! roles, bind listeners, serve, and drain on SIGTERM.
//!
//! Invariant: `anyhow` stops here; roles return typed errors. A role never
//! knows whether it runs alone or beside the others.

mod deps;
mod observability;
mod panics;
mod role;
mod serve;
mod worker;

pub use deps::{Deps, open_bus, open_store};
pub use observability::init_tracing;
pub use role::{Role, Shutdown};
pub use serve::run_roles;
pub use worker::{build_runtime, worker_main};

/// The allocator of every Myelin binary (each links this crate). glibc's
/// keeps freed memory in per-thread arenas, so a process's RSS grows with
/// every busy runtime thread (a password hash's 7 MiB stays behind on each
/// thread that ever hashed); mimalloc gives memory back and is faster for
/// the many small allocations of JSON.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

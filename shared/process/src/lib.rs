//! The lifecycle every Myelin binary shares: load the config, start tracing
//! and metrics, open the store and the bus the config names, build the
//! roles, bind listeners, serve, and drain on SIGTERM.
//!
//! Invariant: `anyhow` stops here; roles return typed errors. A role never
//! knows whether it runs alone or beside the others.

mod allocator;
mod deps;
mod observability;
mod panics;
pub mod partitions;
mod role;
mod room_input;
mod serve;
mod to_device;
mod worker;

pub use allocator::tune_allocator;
pub use deps::{Deps, open_bus, open_store};
pub use observability::{init_tracing, labelled_counter};
pub use role::{Role, Shutdown};
pub use room_input::{matrix_error, request_remote_events, request_room_input};
pub use serve::run_roles;
pub use to_device::{addressed_messages, queue_to_device};
pub use worker::{build_runtime, worker_main};

#![doc = include_str!("../README.md")]

mod consumers;
mod handlers;
mod members;
mod waiters;

use std::sync::Arc;

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_http::Router;
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::Store;

use crate::members::RoomMembers;
use crate::waiters::Waiters;

pub struct Synchrotron {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    waiters: Waiters,
    members: RoomMembers,
    /// Set when the process drains: long-polls answer at once.
    stopping: std::sync::atomic::AtomicBool,
}

pub fn role(deps: &Deps) -> Arc<Synchrotron> {
    Arc::new(Synchrotron {
        store: Arc::clone(&deps.store),
        bus: Arc::clone(&deps.bus),
        waiters: Waiters::default(),
        members: RoomMembers::default(),
        stopping: std::sync::atomic::AtomicBool::new(false),
    })
}

#[async_trait]
impl Role for Synchrotron {
    fn name(&self) -> &'static str {
        "synchrotron"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        handlers::routes(&self, router);
    }

    async fn run(self: Arc<Self>, shutdown: Shutdown) -> anyhow::Result<()> {
        consumers::wake_on_persisted_events(self, shutdown).await
    }
}

#![doc = include_str!("../README.md")]

mod activity;
mod consumers;
mod handlers;
mod members;
mod positions;
mod streams;
mod timelines;
mod waiters;

use std::sync::Arc;

use async_trait::async_trait;
use myelin_bus::Bus;
use myelin_http::Router;
use myelin_process::{Deps, Role, Shutdown};
use myelin_store::Store;

use crate::activity::{PresenceTiming, SyncActivity};
use crate::members::RoomMembers;
use crate::positions::Positions;
use crate::streams::{ToDeviceAcks, TypingRooms};
use crate::timelines::Timelines;
use crate::waiters::Waiters;

pub struct Synchrotron {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    waiters: Waiters,
    members: RoomMembers,
    timelines: Timelines,
    typing: TypingRooms,
    to_device_acks: ToDeviceAcks,
    /// The stored streams' positions, shared by long-polls woken together.
    positions: Positions,
    activity: Arc<SyncActivity>,
    /// `presence.enabled`: without it no presence is recorded or sent.
    presence_enabled: bool,
    presence_timing: PresenceTiming,
    /// Timeline reads by where they were answered: `cache` or `store`.
    timeline_reads: prometheus::IntCounterVec,
    /// Set when the process drains: long-polls answer at once.
    stopping: std::sync::atomic::AtomicBool,
}

pub fn role(deps: &Deps) -> Arc<Synchrotron> {
    Arc::new(Synchrotron {
        store: Arc::clone(&deps.store),
        bus: Arc::clone(&deps.bus),
        waiters: Waiters::default(),
        members: RoomMembers::default(),
        timelines: Timelines::default(),
        typing: TypingRooms::default(),
        to_device_acks: ToDeviceAcks::default(),
        positions: Positions::default(),
        activity: Arc::default(),
        presence_enabled: deps.config.presence.enabled,
        presence_timing: PresenceTiming::from_config(&deps.config.presence),
        timeline_reads: myelin_process::labelled_counter(
            &deps.registry,
            "myelin_sync_timeline_reads_total",
            "Room timelines read for /sync, by where they were found (cache or store).",
            &["source"],
        ),
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
        consumers::wake_on_changes(self, shutdown).await
    }
}

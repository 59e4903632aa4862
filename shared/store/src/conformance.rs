//! One behaviour suite for every store engine.
//!
//! Each engine's `tests/conformance.rs` opens a fresh, empty store and calls
//! [`run_all`]. Checks use their own user and room IDs so they can share it.

mod accounts;
mod aliases;
mod events;

use crate::Store;

/// Runs every check against an empty store.
pub async fn run_all(store: &dyn Store) {
    store.ping().await.expect("ping");
    accounts::create_and_read_user(store).await;
    accounts::duplicate_user_conflicts(store).await;
    accounts::admin_flag_and_password(store).await;
    accounts::profile_updates(store).await;
    accounts::device_tokens(store).await;
    accounts::deactivation_removes_tokens(store).await;
    accounts::filters_round_trip(store).await;
    aliases::alias_lifecycle(store).await;
    events::persist_and_read_back(store).await;
    events::positions_increase_and_paginate(store).await;
    events::state_and_memberships_follow_latest(store).await;
    events::same_txn_id_returns_same_event(store).await;
    events::redaction_prunes_target(store).await;
    events::forgotten_rooms_hide_until_rejoined(store).await;
}

//! One behaviour suite for every store engine.
//!
//! Each engine's `tests/conformance.rs` opens a fresh, empty store and calls
//! [`run_all`]. Checks use their own user and room IDs so they can share it.

mod accounts;
mod aliases;
mod batches;
mod directory;
mod events;
mod keys;
mod media;
mod outbox;
mod pushers;
mod relations;
mod server_keys;
mod snapshots;
mod streams;

pub use relations::{check_backfilled, write_backfill_events};
mod reports;

use crate::Store;
use myelin_types::{StreamPosition, TimelinePoint};

/// The point of a room's timeline a stream position names.
pub(crate) fn at(position: StreamPosition) -> TimelinePoint {
    TimelinePoint::of_stream(position)
}

/// Fetched history going below everything, in a room that was `shared`.
pub(crate) fn start() -> crate::FetchedInto {
    crate::FetchedInto::Start {
        visibility_below: "shared".to_owned(),
    }
}

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
    accounts::registration_nonces_are_single_use(store).await;
    aliases::alias_lifecycle(store).await;
    directory::room_directory_publishes_and_pages(store).await;
    directory::user_search_follows_shared_and_public_rooms(store).await;
    reports::reports_are_kept_for_admins(store).await;
    reports::openid_tokens_expire(store).await;
    events::persist_and_read_back(store).await;
    events::events_by_time_in_both_directions(store).await;
    events::positions_increase_and_paginate(store).await;
    events::the_log_reads_every_room_in_position_order(store).await;
    events::state_and_memberships_follow_latest(store).await;
    events::state_at_a_position_and_one_key_over_time(store).await;
    events::same_txn_id_returns_same_event(store).await;
    events::redaction_prunes_target(store).await;
    events::forgotten_rooms_hide_until_rejoined(store).await;
    events::writes_under_a_superseded_fence_are_refused(store).await;
    snapshots::snapshots_read_back_whole(store).await;
    snapshots::snapshots_are_immutable_and_chains_bounded(store).await;
    snapshots::events_by_id_and_resolved_current_state(store).await;
    snapshots::outliers_are_citable_but_never_in_a_timeline(store).await;
    snapshots::invite_states_are_kept_per_invitee(store).await;
    snapshots::promoted_outliers_sit_below_the_timeline_in_order(store).await;
    snapshots::promoted_history_is_related_and_searchable(store).await;
    snapshots::fetched_history_fills_a_gap_in_order(store).await;
    snapshots::waiting_redactions_apply_when_their_target_arrives(store).await;
    outbox::outbox_sends_in_order_and_keeps_transactions(store).await;
    outbox::edus_go_out_with_the_next_transaction(store).await;
    outbox::inbound_turns_are_one_at_a_time(store).await;
    batches::a_batch_lands_whole_in_order(store).await;
    batches::a_batch_failing_part_way_writes_nothing(store).await;
    batches::content_with_an_escaped_nul_round_trips(store).await;
    media::uploads_round_trip(store).await;
    media::pending_uploads_fill_once_by_their_owner(store).await;
    media::reservations_stop_at_the_limit_even_in_parallel(store).await;
    media::expired_reservations_cannot_be_filled_and_are_purged(store).await;
    media::thumbnails_are_kept_per_size_and_method(store).await;
    media::remote_media_is_kept_per_origin(store).await;
    streams::account_data_changes_read_by_position(store).await;
    streams::receipts_replace_per_type_user_and_thread(store).await;
    streams::typing_notices_run_until_they_end(store).await;
    streams::unread_counts_follow_push_actions_and_receipts(store).await;
    streams::presence_changes_read_by_position(store).await;
    streams::presence_lapses_once_with_time(store).await;
    pushers::pushers_are_kept_replaced_and_removed(store).await;
    pushers::pushes_due_skip_what_was_read(store).await;
    relations::relations_are_indexed_and_paginated(store).await;
    relations::threads_list_by_latest_reply(store).await;
    relations::search_finds_words_in_allowed_rooms(store).await;
    keys::keys_are_stored_counted_and_claimed_once(store).await;
    keys::many_claimers_never_share_a_key(store).await;
    keys::to_device_messages_wait_until_acknowledged(store).await;
    keys::cross_signing_keys_and_signatures_are_kept(store).await;
    keys::key_backups_keep_the_better_key(store).await;
    keys::remote_device_lists_are_kept_while_a_room_is_shared(store).await;
    keys::device_list_changes_name_what_changed(store).await;
    server_keys::server_keys_keep_their_longest_validity(store).await;
    leases_are_exclusive(store).await;
}

/// Leases are exclusive between sessions and die with their session.
pub async fn leases_are_exclusive(store: &dyn Store) {
    let first = store.lease_session().await.expect("session");
    let second = store.lease_session().await.expect("session");
    let fence = first.try_acquire(7_000_001).await.expect("acquire");
    assert!(fence.is_some(), "a free lease was not granted");
    assert_eq!(
        first
            .try_acquire(7_000_001)
            .await
            .expect("re-acquire by the holder"),
        fence,
        "asking again gives the holder the same fence"
    );
    assert_eq!(
        second.try_acquire(7_000_001).await.expect("contended"),
        None
    );
    first.release(7_000_001).await.expect("release");
    let next = second
        .try_acquire(7_000_001)
        .await
        .expect("acquire after release")
        .expect("a released lease is free");
    assert!(
        fence.is_some_and(|fence| next.epoch > fence.epoch),
        "every acquisition moves the fence on: {fence:?} then {next:?}"
    );
    assert!(
        first
            .try_acquire(7_000_002)
            .await
            .expect("acquire")
            .is_some()
    );
    first.check().await.expect("alive");
    drop(first);
    // A lost session frees its leases; the server may take a moment to notice.
    let mut freed = false;
    for _ in 0..50 {
        if second
            .try_acquire(7_000_002)
            .await
            .expect("acquire")
            .is_some()
        {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "the dropped session still holds its lease");

    let ttl = std::time::Duration::from_secs(30);
    assert_eq!(
        store
            .heartbeat("conformance", "a", ttl)
            .await
            .expect("heartbeat"),
        1
    );
    assert_eq!(
        store
            .heartbeat("conformance", "b", ttl)
            .await
            .expect("heartbeat"),
        2
    );
    assert_eq!(
        store
            .heartbeat("conformance", "a", ttl)
            .await
            .expect("heartbeat"),
        2
    );
    store.leave_group("conformance", "b").await.expect("leave");
    assert_eq!(
        store
            .heartbeat("conformance", "a", ttl)
            .await
            .expect("heartbeat"),
        1
    );
    assert_eq!(
        store
            .heartbeat("other", "x", std::time::Duration::ZERO)
            .await
            .expect("heartbeat"),
        1
    );
}

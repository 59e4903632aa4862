//! Applies `migrations/sqlite/*.sql` in order, once each.

use myelin_store::StoreResult;
use rusqlite::Connection;

use crate::map_error;

/// Every migration, by number; the PostgreSQL list has the same names.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_forgotten_rooms.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_state_history_index.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/sqlite/0004_group_instances.sql"),
    ),
    (5, include_str!("../../../migrations/sqlite/0005_media.sql")),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_lease_fences.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_authenticated_media.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_media_blob_index.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/sqlite/0009_used_registration_nonces.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/sqlite/0010_streams.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/sqlite/0011_directory_reports_openid.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/sqlite/0012_relations_and_search.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/sqlite/0013_pushers.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/sqlite/0014_presence_lapse.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/sqlite/0015_push_action_pruning.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/sqlite/0016_end_to_end_keys.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/sqlite/0017_device_lists.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/sqlite/0018_cross_signing.sql"),
    ),
    (
        19,
        include_str!("../../../migrations/sqlite/0019_key_backup.sql"),
    ),
    (
        20,
        include_str!("../../../migrations/sqlite/0020_server_keys.sql"),
    ),
    (
        21,
        include_str!("../../../migrations/sqlite/0021_one_time_key_counts.sql"),
    ),
    (
        22,
        include_str!("../../../migrations/sqlite/0022_state_snapshots.sql"),
    ),
    (
        23,
        include_str!("../../../migrations/sqlite/0023_federation_outbox.sql"),
    ),
    (
        24,
        include_str!("../../../migrations/sqlite/0024_outlier_events.sql"),
    ),
    (
        25,
        include_str!("../../../migrations/sqlite/0025_invite_states.sql"),
    ),
    (
        26,
        include_str!("../../../migrations/sqlite/0026_federation_edu_outbox.sql"),
    ),
    (
        27,
        include_str!("../../../migrations/sqlite/0027_remote_media.sql"),
    ),
    (
        28,
        include_str!("../../../migrations/sqlite/0028_backfilled_history.sql"),
    ),
    (
        29,
        include_str!("../../../migrations/sqlite/0029_inbound_turns.sql"),
    ),
    (
        30,
        include_str!("../../../migrations/sqlite/0030_device_list_cursors.sql"),
    ),
    (
        31,
        include_str!("../../../migrations/sqlite/0031_waiting_redactions.sql"),
    ),
    (
        32,
        include_str!("../../../migrations/sqlite/0032_waiting_redactions_by_room.sql"),
    ),
    (
        33,
        include_str!("../../../migrations/sqlite/0033_inbound_turns_unlogged.sql"),
    ),
    (
        34,
        include_str!("../../../migrations/sqlite/0034_inbound_answers.sql"),
    ),
    (
        35,
        include_str!("../../../migrations/sqlite/0035_receipt_cursors.sql"),
    ),
    (
        36,
        include_str!("../../../migrations/sqlite/0036_remote_device_lists.sql"),
    ),
    (
        37,
        include_str!("../../../migrations/sqlite/0037_device_list_subjects.sql"),
    ),
    (
        38,
        include_str!("../../../migrations/sqlite/0038_timeline_slots.sql"),
    ),
];

/// Applies the missing migrations inside one exclusive transaction, so two
/// processes starting at once do not both apply them.
pub(crate) fn apply(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(map_error)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
        .map_err(map_error)?;
    // Every version not applied yet, not only those above the highest: a
    // database may have met a higher number first.
    let applied: std::collections::BTreeSet<i64> = {
        let mut statement = tx
            .prepare("SELECT version FROM schema_migrations")
            .map_err(map_error)?;
        let versions = statement
            .query_map([], |row| row.get(0))
            .map_err(map_error)?;
        versions
            .collect::<rusqlite::Result<_>>()
            .map_err(map_error)?
    };
    for (version, sql) in MIGRATIONS
        .iter()
        .filter(|(version, _)| !applied.contains(version))
    {
        tracing::info!(version, "applying SQLite migration");
        tx.execute_batch(sql).map_err(map_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            [version],
        )
        .map_err(map_error)?;
    }
    tx.commit().map_err(map_error)
}

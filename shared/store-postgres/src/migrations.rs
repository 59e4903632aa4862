//! Applies `migrations/postgres/*.sql` in order, once each.

use deadpool_postgres::{Object, Pool};
use myelin_store::StoreResult;

use crate::map_error;

/// Every migration, by number; the SQLite list has the same names.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_forgotten_rooms.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_state_history_index.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_group_instances.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_media.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_lease_fences.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_authenticated_media.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_media_blob_index.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_used_registration_nonces.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_streams.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_directory_reports_openid.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_relations_and_search.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/postgres/0013_pushers.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/postgres/0014_presence_lapse.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/postgres/0015_push_action_pruning.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/postgres/0016_end_to_end_keys.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/postgres/0017_device_lists.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/postgres/0018_cross_signing.sql"),
    ),
    (
        19,
        include_str!("../../../migrations/postgres/0019_key_backup.sql"),
    ),
    (
        20,
        include_str!("../../../migrations/postgres/0020_server_keys.sql"),
    ),
    (
        21,
        include_str!("../../../migrations/postgres/0021_one_time_key_counts.sql"),
    ),
    (
        22,
        include_str!("../../../migrations/postgres/0022_state_snapshots.sql"),
    ),
    (
        23,
        include_str!("../../../migrations/postgres/0023_federation_outbox.sql"),
    ),
    (
        24,
        include_str!("../../../migrations/postgres/0024_outlier_events.sql"),
    ),
    (
        25,
        include_str!("../../../migrations/postgres/0025_invite_states.sql"),
    ),
    (
        26,
        include_str!("../../../migrations/postgres/0026_federation_edu_outbox.sql"),
    ),
    (
        27,
        include_str!("../../../migrations/postgres/0027_remote_media.sql"),
    ),
    (
        28,
        include_str!("../../../migrations/postgres/0028_backfilled_history.sql"),
    ),
    (
        29,
        include_str!("../../../migrations/postgres/0029_inbound_turns.sql"),
    ),
    (
        30,
        include_str!("../../../migrations/postgres/0030_device_list_cursors.sql"),
    ),
    (
        31,
        include_str!("../../../migrations/postgres/0031_waiting_redactions.sql"),
    ),
    (
        32,
        include_str!("../../../migrations/postgres/0032_waiting_redactions_by_room.sql"),
    ),
    (
        33,
        include_str!("../../../migrations/postgres/0033_inbound_turns_unlogged.sql"),
    ),
    (
        34,
        include_str!("../../../migrations/postgres/0034_inbound_answers.sql"),
    ),
    (
        35,
        include_str!("../../../migrations/postgres/0035_receipt_cursors.sql"),
    ),
    (
        36,
        include_str!("../../../migrations/postgres/0036_remote_device_lists.sql"),
    ),
    (
        37,
        include_str!("../../../migrations/postgres/0037_device_list_subjects.sql"),
    ),
    (
        38,
        include_str!("../../../migrations/postgres/0038_timeline_slots.sql"),
    ),
];

/// The advisory lock key that serialises migrations ("myelin" in ASCII).
const LOCK_KEY: i64 = 0x6d79_656c_696e;

/// Applies the missing migrations while holding a session advisory lock, so
/// processes starting at once wait for each other instead of racing on DDL.
pub(crate) async fn apply(pool: &Pool) -> StoreResult<()> {
    let mut client = pool.get().await.map_err(map_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_error)?;
    let applied = apply_locked(&mut client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .map_err(map_error);
    if unlocked.is_err() {
        // A session lock lives as long as its connection: close this one
        // rather than hand a locked session to the pool.
        drop(Object::take(client));
    }
    applied?;
    unlocked.map(drop)
}

async fn apply_locked(client: &mut Object) -> StoreResult<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
        .await
        .map_err(map_error)?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(map_error)?
        .iter()
        .map(|row| crate::get(row, 0))
        .collect::<StoreResult<_>>()?;
    for (version, sql) in MIGRATIONS
        .iter()
        .filter(|(version, _)| !applied.contains(version))
    {
        tracing::info!(version, "applying PostgreSQL migration");
        // The schema change and its record commit together or not at all.
        let tx = client.transaction().await.map_err(map_error)?;
        tx.batch_execute(sql).await.map_err(map_error)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
    }
    Ok(())
}

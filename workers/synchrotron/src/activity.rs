//! Presence as syncs make it: a sync with `set_presence` brings an offline
//! user online (or marks them `unavailable`), and while a user's syncs run
//! they are noted in the store every few seconds. Every replica lets
//! presence lapse on a tick: `online` users who have done nothing for a
//! while become `unavailable`, users whose syncs stopped become `offline`.
//! The store decides each lapse once, so replicas may race.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use myelin_bus::topics::{self, PresenceChanged};
use myelin_store::{LapseCutoffs, PresenceUpdate};
use myelin_types::now_millis;
use ruma::presence::PresenceState;

use crate::Synchrotron;

/// A user's stored presence is re-read by their syncs at most this often.
const RECHECK_MS: i64 = 60_000;
/// Users whose presence is remembered; past this the memory starts over.
const MAX_REMEMBERED: usize = 100_000;
/// Users noted as syncing in one store call.
const NOTE_BATCH: usize = 1000;

/// The timing of presence, from `presence.idle_after` and `offline_after`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PresenceTiming {
    pub(crate) idle_after_ms: i64,
    pub(crate) offline_after_ms: i64,
}

impl PresenceTiming {
    pub(crate) fn from_config(config: &myelin_config::PresenceConfig) -> PresenceTiming {
        let ms = |value: u64| i64::try_from(value).unwrap_or(i64::MAX / 4);
        PresenceTiming {
            idle_after_ms: ms(config.idle_after_ms()),
            offline_after_ms: ms(config.offline_after_ms()),
        }
    }

    /// How often running syncs are noted and lapses looked for: often
    /// enough that a user who syncs is never taken for gone.
    pub(crate) fn tick(&self) -> Duration {
        let ms = (self.offline_after_ms / 3).clamp(1_000, 10_000);
        Duration::from_millis(u64::try_from(ms).unwrap_or(10_000))
    }

    fn cutoffs(&self, now: i64) -> LapseCutoffs {
        let tick_ms = i64::try_from(self.tick().as_millis()).unwrap_or(10_000);
        LapseCutoffs {
            idle_before: now - self.idle_after_ms,
            // A running sync is noted once a tick, so allow one more.
            gone_before: now - self.offline_after_ms - tick_ms,
        }
    }
}

/// What this replica knows of its syncing users.
#[derive(Default)]
pub(crate) struct SyncActivity {
    /// The state each user's presence was last seen in, and when.
    seen: Mutex<HashMap<String, (String, i64)>>,
    syncing: Mutex<Syncing>,
}

#[derive(Default)]
struct Syncing {
    /// Syncs running now, per user.
    running: HashMap<String, usize>,
    /// Users whose sync ended since the last note.
    ended: HashSet<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SyncActivity {
    fn seen_recently(&self, user_id: &str, now: i64) -> Option<String> {
        lock(&self.seen)
            .get(user_id)
            .filter(|(_, at)| now - at < RECHECK_MS)
            .map(|(state, _)| state.clone())
    }

    fn remember(&self, user_id: &str, state: &str, now: i64) {
        let mut seen = lock(&self.seen);
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(user_id.to_owned(), (state.to_owned(), now));
    }

    /// Someone changed the user's presence: read it again next time.
    pub(crate) fn forget(&self, user_id: &str) {
        lock(&self.seen).remove(user_id);
    }

    fn start(self: &Arc<Self>, user_id: &str) -> RunningSync {
        *lock(&self.syncing)
            .running
            .entry(user_id.to_owned())
            .or_default() += 1;
        RunningSync {
            activity: Arc::clone(self),
            user_id: user_id.to_owned(),
        }
    }

    /// The users who synced since the last call.
    fn take_syncing(&self) -> Vec<String> {
        let mut syncing = lock(&self.syncing);
        let mut users: HashSet<String> = std::mem::take(&mut syncing.ended);
        users.extend(syncing.running.keys().cloned());
        users.into_iter().collect()
    }
}

/// Held while a sync runs; its user counts as syncing until it drops.
pub(crate) struct RunningSync {
    activity: Arc<SyncActivity>,
    user_id: String,
}

impl Drop for RunningSync {
    fn drop(&mut self) {
        let mut syncing = lock(&self.activity.syncing);
        if let Some(count) = syncing.running.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                syncing.running.remove(&self.user_id);
            }
        }
        syncing.ended.insert(std::mem::take(&mut self.user_id));
    }
}

/// The state a sync asking for `wanted` leaves a user in `current`: it
/// brings an offline user online, but a user away stays away until they do
/// something (or say so).
fn state_after_sync(current: &str, wanted: &str) -> Option<&'static str> {
    match (current, wanted) {
        ("offline", "online") => Some("online"),
        (current, "unavailable") if current != "unavailable" => Some("unavailable"),
        _ => None,
    }
}

impl Synchrotron {
    /// Applies the sync's `set_presence` and counts its user as syncing
    /// while the returned guard lives (`offline` leaves both alone).
    pub(crate) async fn sync_started(
        &self,
        user_id: &str,
        set_presence: &PresenceState,
    ) -> Option<RunningSync> {
        if !self.presence_enabled {
            return None;
        }
        let wanted = match set_presence {
            PresenceState::Online => "online",
            PresenceState::Unavailable => "unavailable",
            _ => return None,
        };
        let running = self.activity.start(user_id);
        let now = now_millis();
        let current = match self.activity.seen_recently(user_id, now) {
            Some(state) => state,
            None => match self.store.presence(user_id).await {
                Ok(record) => record.map_or_else(|| "offline".to_owned(), |record| record.state),
                Err(error) => {
                    tracing::warn!(%error, "cannot read presence");
                    return Some(running);
                }
            },
        };
        let Some(state) = state_after_sync(&current, wanted) else {
            self.activity.remember(user_id, &current, now);
            return Some(running);
        };
        let update = PresenceUpdate {
            user_id: user_id.to_owned(),
            state: state.to_owned(),
            status_msg: None,
            last_active_ts: now,
        };
        match self.store.set_presence(update).await {
            Ok(position) => {
                self.activity.remember(user_id, state, now);
                self.announce_presence(user_id, position).await;
            }
            Err(error) => tracing::warn!(%error, "cannot record presence"),
        }
        Some(running)
    }

    async fn announce_presence(&self, user_id: &str, position: myelin_types::StreamPosition) {
        let change = PresenceChanged {
            user_id: user_id.to_owned(),
            position,
        };
        if let Err(error) = topics::PRESENCE.announce(self.bus.as_ref(), &change).await {
            tracing::warn!(%error, "cannot announce a presence change");
        }
    }

    /// Notes who is syncing, then lets presence lapse (one tick's work).
    pub(crate) async fn keep_presence(&self) {
        if !self.presence_enabled {
            return;
        }
        let now = now_millis();
        for users in self.activity.take_syncing().chunks(NOTE_BATCH) {
            if let Err(error) = self.store.note_presence_syncs(users, now).await {
                tracing::warn!(%error, "cannot note running syncs");
            }
        }
        match self
            .store
            .lapse_presence(self.presence_timing.cutoffs(now))
            .await
        {
            Ok(lapsed) => {
                for change in lapsed {
                    self.announce_presence(&change.user_id, change.position)
                        .await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot let presence lapse"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_brings_the_offline_online_and_leaves_the_away_away() {
        assert_eq!(state_after_sync("offline", "online"), Some("online"));
        assert_eq!(state_after_sync("online", "online"), None);
        assert_eq!(state_after_sync("unavailable", "online"), None);
        assert_eq!(
            state_after_sync("online", "unavailable"),
            Some("unavailable")
        );
        assert_eq!(
            state_after_sync("offline", "unavailable"),
            Some("unavailable")
        );
        assert_eq!(state_after_sync("unavailable", "unavailable"), None);
    }

    #[test]
    fn a_user_counts_as_syncing_until_the_next_note_after_their_sync() {
        let activity = Arc::new(SyncActivity::default());
        let first = activity.start("@a:hs");
        let second = activity.start("@a:hs");
        drop(first);
        assert_eq!(activity.take_syncing(), ["@a:hs"]);
        drop(second);
        assert_eq!(activity.take_syncing(), ["@a:hs"], "ended since the note");
        assert!(activity.take_syncing().is_empty());
    }

    #[test]
    fn the_tick_keeps_a_syncing_user_from_going_offline() {
        let timing = PresenceTiming {
            idle_after_ms: 300_000,
            offline_after_ms: 30_000,
        };
        assert_eq!(timing.tick(), Duration::from_secs(10));
        let cutoffs = timing.cutoffs(1_000_000);
        assert_eq!(cutoffs.idle_before, 700_000);
        assert_eq!(cutoffs.gone_before, 1_000_000 - 40_000);
        let quick = PresenceTiming {
            idle_after_ms: 2_000,
            offline_after_ms: 3_000,
        };
        assert_eq!(quick.tick(), Duration::from_secs(1));
    }
}

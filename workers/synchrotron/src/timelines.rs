//! Recent timelines of the rooms this synchrotron serves.
//!
//! The cache is filled by reading the store as one ordered log
//! ([`EventStore::events_after`]) up to the position a sync is about to
//! answer for, never from bus payloads: a bus message can be lost or arrive
//! out of order, the store's positions cannot. The bus only says that
//! something new exists; a restart starts with an empty cache.
//!
//! What the cache knows: every event above `covered`'s starting point that it
//! has read, per room, trimmed to the newest few. A room without an entry had
//! no event in `(floor, covered]`; a room with one holds every event above its
//! `complete_above`. A question it cannot answer goes to the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use myelin_store::{EventStore, StoreResult, StoredEvent};
use myelin_types::StreamPosition;

/// Events kept per room: a sync's default timeline is 10, clients ask 20-50.
const EVENTS_PER_ROOM: usize = 50;
/// Rooms kept; the least recently active go first.
const MAX_ROOMS: usize = 4096;
/// Events read from the store per query while catching up.
const BATCH: usize = 500;
/// Further behind than this, reading forward costs more than starting over.
const MAX_LAG: i64 = 20_000;

pub(crate) type CachedEvent = Arc<StoredEvent>;

pub(crate) struct Timelines {
    known: RwLock<Known>,
    /// One reader of the log at a time; the others wait and find it done.
    tailing: tokio::sync::Mutex<()>,
}

struct RoomTimeline {
    /// Every event of the room above this position is in `recent`.
    complete_above: StreamPosition,
    /// Oldest first.
    recent: VecDeque<CachedEvent>,
}

#[derive(Default)]
struct Known {
    /// The log has been read up to here; `None` until the first catch-up.
    covered: Option<StreamPosition>,
    /// Rooms without an entry had no event in `(floor, covered]`.
    floor: StreamPosition,
    rooms: HashMap<String, RoomTimeline>,
    /// Each room by its newest cached position, to evict the quietest.
    by_latest: BTreeMap<StreamPosition, String>,
}

impl Default for Timelines {
    fn default() -> Self {
        Self {
            known: RwLock::new(Known::default()),
            tailing: tokio::sync::Mutex::new(()),
        }
    }
}

impl Timelines {
    /// Reads the log up to `upto`, so every event at or below it is known.
    pub(crate) async fn catch_up(
        &self,
        store: &dyn EventStore,
        upto: StreamPosition,
    ) -> StoreResult<()> {
        if self.read().covered.is_some_and(|covered| covered >= upto) {
            return Ok(());
        }
        let _tailing = self.tailing.lock().await;
        loop {
            // Bound first: a guard in the match head would live through the arms.
            let covered = self.read().covered;
            let covered = match covered {
                Some(covered) if covered >= upto => return Ok(()),
                Some(covered) if upto.0 - covered.0 <= MAX_LAG => covered,
                // First use, or too far behind: know nothing below `upto`.
                _ => {
                    self.write().start_over(upto);
                    return Ok(());
                }
            };
            let batch = store.events_after(covered, upto, BATCH).await?;
            let read_to = match batch.last() {
                Some(last) if batch.len() == BATCH => last.position,
                _ => upto,
            };
            let redacted = redacted_targets(store, &batch).await?;
            let mut known = self.write();
            for event in batch {
                known.append(Arc::new(event));
            }
            for target in redacted {
                known.replace(Arc::new(target));
            }
            known.covered = Some(read_to);
        }
    }

    /// The newest events (at most `take`, newest first) of the room in
    /// `(lower, upper]`, or `None` when the cache cannot tell.
    pub(crate) fn newest(
        &self,
        room_id: &str,
        lower: Option<StreamPosition>,
        upper: StreamPosition,
        take: usize,
    ) -> Option<Vec<CachedEvent>> {
        let known = self.read();
        if known.covered.is_none_or(|covered| upper > covered) {
            return None;
        }
        let Some(room) = known.rooms.get(room_id) else {
            return lower
                .is_some_and(|lower| lower >= known.floor)
                .then(Vec::new);
        };
        let found: Vec<CachedEvent> = room
            .recent
            .iter()
            .rev()
            .skip_while(|event| event.position > upper)
            .take_while(|event| lower.is_none_or(|lower| event.position > lower))
            .take(take)
            .cloned()
            .collect();
        // Fewer than asked is the whole answer only if nothing in the range
        // can lie below what the cache holds.
        let whole = found.len() == take || lower.is_some_and(|lower| lower >= room.complete_above);
        whole.then_some(found)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Known> {
        self.known
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Known {
    fn start_over(&mut self, at: StreamPosition) {
        *self = Known {
            covered: Some(at),
            floor: at,
            ..Known::default()
        };
    }

    fn append(&mut self, event: CachedEvent) {
        let floor = self.floor;
        let room = self
            .rooms
            .entry(event.room_id.clone())
            .or_insert_with(|| RoomTimeline {
                complete_above: floor,
                recent: VecDeque::new(),
            });
        if let Some(previous) = room.recent.back() {
            self.by_latest.remove(&previous.position);
        }
        self.by_latest.insert(event.position, event.room_id.clone());
        room.recent.push_back(event);
        while room.recent.len() > EVENTS_PER_ROOM {
            if let Some(dropped) = room.recent.pop_front() {
                room.complete_above = dropped.position;
            }
        }
        while self.rooms.len() > MAX_ROOMS {
            let Some((latest, room_id)) = self.by_latest.pop_first() else {
                break;
            };
            self.rooms.remove(&room_id);
            // The evicted room had nothing above `latest`.
            self.floor = self.floor.max(latest);
        }
    }

    /// Swaps in the stored copy of an event a redaction pruned.
    fn replace(&mut self, event: CachedEvent) {
        if let Some(room) = self.rooms.get_mut(&event.room_id)
            && let Some(slot) = room
                .recent
                .iter_mut()
                .find(|cached| cached.event_id == event.event_id)
        {
            *slot = event;
        }
    }
}

/// The stored (pruned) copies of the events the batch's redactions target.
async fn redacted_targets(
    store: &dyn EventStore,
    batch: &[StoredEvent],
) -> StoreResult<Vec<StoredEvent>> {
    let mut targets = Vec::new();
    for redaction in batch.iter().filter(|e| e.event_type == "m.room.redaction") {
        for target_id in redaction_targets(&redaction.pdu_json) {
            if let Some(target) = store.event(&target_id).await? {
                targets.push(target);
            }
        }
    }
    Ok(targets)
}

/// `redacts` sits at the top level before room version 11, in the content
/// from 11 on; both are read, since re-reading a stored copy is harmless.
fn redaction_targets(pdu_json: &str) -> Vec<String> {
    let Ok(pdu) = serde_json::from_str::<serde_json::Value>(pdu_json) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = [pdu.get("redacts"), pdu.pointer("/content/redacts")]
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .map(str::to_owned)
        .collect();
    targets.dedup();
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(room_id: &str, position: i64) -> CachedEvent {
        Arc::new(StoredEvent {
            position: StreamPosition(position),
            slot: StreamPosition(position),
            opens_gap: false,
            event_id: format!("${room_id}-{position}"),
            room_id: room_id.to_owned(),
            sender: "@s:hs".to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            depth: position,
            origin_server_ts: position,
            pdu_json: "{}".to_owned(),
            txn: None,
            redacted_by: None,
            redaction_pdu_json: None,
        })
    }

    fn timelines_from(start: i64, events: &[(&str, i64)]) -> Timelines {
        let timelines = Timelines::default();
        {
            let mut known = timelines.write();
            known.start_over(StreamPosition(start));
            for (room, position) in events {
                known.append(event(room, *position));
                known.covered = Some(StreamPosition(*position));
            }
        }
        timelines
    }

    fn positions(found: Option<Vec<CachedEvent>>) -> Option<Vec<i64>> {
        found.map(|events| events.iter().map(|e| e.position.0).collect())
    }

    #[test]
    fn answers_only_what_it_has_read() {
        let timelines = timelines_from(10, &[("!a", 11), ("!b", 12), ("!a", 13)]);
        let p = StreamPosition;
        assert_eq!(
            positions(timelines.newest("!a", Some(p(10)), p(13), 5)),
            Some(vec![13, 11])
        );
        assert_eq!(
            positions(timelines.newest("!a", Some(p(11)), p(12), 5)),
            Some(vec![])
        );
        // A room never seen had nothing since the start...
        assert_eq!(
            positions(timelines.newest("!c", Some(p(10)), p(13), 5)),
            Some(vec![])
        );
        // ...but what came before the start, or after what was read, is unknown.
        assert_eq!(timelines.newest("!c", Some(p(9)), p(13), 5), None);
        assert_eq!(timelines.newest("!a", Some(p(9)), p(13), 5), None);
        assert_eq!(timelines.newest("!a", Some(p(10)), p(14), 5), None);
        assert_eq!(timelines.newest("!a", None, p(13), 5), None);
        // A full page needs no lower bound.
        assert_eq!(
            positions(timelines.newest("!a", None, p(13), 1)),
            Some(vec![13])
        );
    }

    #[test]
    fn trimming_a_room_narrows_what_it_answers() {
        let events: Vec<(&str, i64)> = (1..=EVENTS_PER_ROOM as i64 + 5)
            .map(|position| ("!busy", position))
            .collect();
        let timelines = timelines_from(0, &events);
        let last = StreamPosition(EVENTS_PER_ROOM as i64 + 5);
        assert_eq!(
            timelines.newest("!busy", Some(StreamPosition(0)), last, 1000),
            None
        );
        let since = StreamPosition(last.0 - 3);
        assert_eq!(
            positions(timelines.newest("!busy", Some(since), last, 1000)),
            Some(vec![last.0, last.0 - 1, last.0 - 2])
        );
    }

    #[test]
    fn evicting_the_quietest_room_raises_the_floor() {
        let timelines = timelines_from(0, &[]);
        {
            let mut known = timelines.write();
            for n in 1..=MAX_ROOMS as i64 + 1 {
                known.append(event(&format!("!r{n}"), n));
            }
            known.covered = Some(StreamPosition(MAX_ROOMS as i64 + 1));
        }
        let upto = StreamPosition(MAX_ROOMS as i64 + 1);
        // The first room went, and with it what the cache can say below it.
        assert_eq!(
            timelines.newest("!r1", Some(StreamPosition(0)), upto, 5),
            None
        );
        assert_eq!(
            positions(timelines.newest("!r1", Some(StreamPosition(1)), upto, 5)),
            Some(vec![])
        );
        assert_eq!(
            positions(timelines.newest("!r2", Some(StreamPosition(0)), upto, 5)),
            Some(vec![2])
        );
    }

    #[test]
    fn a_redaction_swaps_in_the_pruned_copy() {
        let timelines = timelines_from(0, &[("!a", 1), ("!a", 2)]);
        let mut pruned = (*event("!a", 1)).clone();
        pruned.redacted_by = Some("$redaction".to_owned());
        timelines.write().replace(Arc::new(pruned));
        let found = timelines
            .newest("!a", Some(StreamPosition(0)), StreamPosition(2), 5)
            .expect("known");
        assert_eq!(found[1].redacted_by.as_deref(), Some("$redaction"));
        assert_eq!(found[0].redacted_by, None);
    }

    fn persist_event(n: i64, room_id: &str, prev: &str) -> myelin_store::PersistEvent {
        myelin_store::PersistEvent {
            event_id: format!("$e{n}"),
            room_id: room_id.to_owned(),
            sender: "@s:hs".to_owned(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            depth: n,
            origin_server_ts: n,
            pdu_json: format!(r#"{{"n":{n}}}"#),
            prev_events: if prev.is_empty() {
                vec![]
            } else {
                vec![prev.to_owned()]
            },
            membership: None,
            txn: None,
            redaction: None,
            redacted_on_arrival: None,
            new_room_version: (n == 0).then(|| "12".to_owned()),
            push_actions: Vec::new(),
            fence: None,
            snapshots: None,
            resolved_state: None,
            opens_gap: false,
        }
    }

    #[tokio::test]
    async fn catching_up_reads_the_log_and_follows_redactions() {
        let dir = std::env::temp_dir().join(format!("myelin-timelines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("timelines.db");
        let _ = std::fs::remove_file(&path);
        let store = myelin_store_sqlite::SqliteStore::open(&path)
            .await
            .expect("open");
        let persist = |event| async {
            match store.persist_event(event).await.expect("persist") {
                myelin_store::PersistOutcome::Persisted(position) => position,
                other => panic!("not persisted: {other:?}"),
            }
        };
        let mut create = persist_event(0, "!a", "");
        create.event_type = "m.room.create".to_owned();
        create.state_key = Some(String::new());
        let start = persist(create).await;

        let timelines = Timelines::default();
        timelines.catch_up(&store, start).await.expect("first");
        let mut third = start;
        for n in 1..=3 {
            third = persist(persist_event(n, "!a", &format!("$e{}", n - 1))).await;
        }
        assert_eq!(timelines.newest("!a", Some(start), third, 10), None);
        timelines.catch_up(&store, third).await.expect("catch up");
        let before = timelines
            .newest("!a", Some(start), third, 10)
            .expect("known");
        assert_eq!(before[1].pdu_json, r#"{"n":2}"#);

        // The redaction comes later: the cached target is swapped for its pruned copy.
        let mut redaction = persist_event(4, "!a", "$e3");
        redaction.event_type = "m.room.redaction".to_owned();
        redaction.pdu_json = r#"{"content":{"redacts":"$e2"}}"#.to_owned();
        redaction.redaction = Some(myelin_store::Redaction {
            target_event_id: "$e2".to_owned(),
            pruned_pdu_json: r#"{"pruned":true}"#.to_owned(),
        });
        let upto = persist(redaction).await;

        timelines
            .catch_up(&store, upto)
            .await
            .expect("catch up again");
        let found = timelines
            .newest("!a", Some(start), upto, 10)
            .expect("known after catching up");
        let ids: Vec<&str> = found.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["$e4", "$e3", "$e2", "$e1"]);
        assert_eq!(found[2].pdu_json, r#"{"pruned":true}"#);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn finds_the_target_in_every_room_version() {
        assert_eq!(
            redaction_targets(r#"{"redacts":"$old","content":{}}"#),
            ["$old"]
        );
        assert_eq!(
            redaction_targets(r#"{"content":{"redacts":"$new"}}"#),
            ["$new"]
        );
        assert_eq!(
            redaction_targets(r#"{"redacts":"$a","content":{"redacts":"$b"}}"#),
            ["$a", "$b"]
        );
        assert!(redaction_targets(r#"{"content":{}}"#).is_empty());
        assert!(redaction_targets("not json").is_empty());
    }
}

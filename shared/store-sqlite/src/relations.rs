//! The relation index, written with each event, and the full-text index
//! (FTS5), filled in batches behind the events (see [`index_search_batch`]).

use async_trait::async_trait;
use myelin_store::{
    Direction, IndexedEvent, MAX_RELATION_DEPTH, RelationQuery, RelationStore, SearchHit,
    SearchOrder, SearchPage, SearchQuery, StoreResult, StoredEvent, THREAD, ThreadRoot,
    ThreadSummary, index_of,
};
use myelin_types::{StreamPosition, TimelinePoint};
use rusqlite::{OptionalExtension, params};

use crate::events::event_from_row;
use crate::{SqliteStore, map_error};

/// The event columns of `events`, named through the table for joins.
const COLUMNS: &str = "events.position, events.event_id, events.room_id, events.sender, \
     events.event_type, events.state_key, events.depth, events.origin_server_ts, \
     events.pdu_json, events.txn_user_id, events.txn_device_id, events.txn_id, \
     events.redacted_by, \
     (SELECT r.pdu_json FROM events AS r WHERE r.event_id = events.redacted_by), events.slot, \
     events.opens_gap";

fn upto(position: Option<StreamPosition>) -> i64 {
    position.map_or(i64::MAX, |position| position.0)
}

/// Ranges of timeline points as a JSON list of
/// `[after slot, after position, upto slot, upto position]` (the end of the
/// timeline where open), for `json_each`.
fn point_ranges<'a>(
    ranges: impl IntoIterator<Item = (&'a str, TimelinePoint, Option<TimelinePoint>)>,
) -> String {
    json_list(ranges.into_iter().map(|(room_id, after, upto)| {
        let upto = upto.unwrap_or(TimelinePoint::AFTER_ALL);
        (
            room_id,
            after.slot.0,
            after.position.0,
            upto.slot.0,
            upto.position.0,
        )
    }))
}

fn json_list(items: impl IntoIterator<Item = impl serde::Serialize>) -> String {
    serde_json::to_string(&items.into_iter().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

/// Indexes the relation of the event just written at `position`: bundled
/// aggregations need it at once. Its text waits for the next search batch.
pub(crate) fn index_event(
    tx: &rusqlite::Transaction<'_>,
    event: &IndexedEvent<'_>,
    position: i64,
) -> StoreResult<()> {
    if let Some(relation) = event.index().relation {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO event_relations (event_id, room_id, parent_id, rel_type,
                 event_type, sender, origin_server_ts, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                event.event_id,
                event.room_id,
                relation.parent_id,
                relation.rel_type,
                event.event_type,
                event.sender,
                event.origin_server_ts,
                position,
            ])
        })
        .map_err(map_error)?;
    }
    Ok(())
}

/// Adds the event at `position` to the full-text index, if it has text.
pub(crate) fn index_search_text(
    tx: &rusqlite::Transaction<'_>,
    position: i64,
    event_type: &str,
    state_key: Option<&str>,
    pdu_json: &str,
) -> StoreResult<()> {
    if let Some(search) = index_of(event_type, state_key, pdu_json).search {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO event_search (rowid, text, key) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut statement| statement.execute(params![position, search.text, search.key]))
        .map_err(map_error)?;
    }
    Ok(())
}

/// Events read into the full-text index per transaction.
pub(crate) const SEARCH_BATCH: usize = 500;

/// Adds the text of the events stored since the last batch to the
/// full-text index, at most [`SEARCH_BATCH`] of them, and returns how many
/// it read. One FTS5 segment per batch rather than per event is what keeps
/// indexing off the cost of a send. Outliers are not in the timeline and
/// so not searched; fetched history is indexed as it is promoted, below
/// zero where these batches never reach.
pub(crate) fn index_search_batch(tx: &rusqlite::Transaction<'_>) -> StoreResult<usize> {
    let from: i64 = tx
        .prepare_cached("SELECT position FROM search_progress WHERE id = 1")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)))
        .map_err(map_error)?;
    let events: Vec<(i64, String, Option<String>, String, bool)> = tx
        .prepare_cached(
            "SELECT position, event_type, state_key, pdu_json,
                    redacted_by IS NOT NULL OR outlier
             FROM events WHERE position > ?1 ORDER BY position LIMIT ?2",
        )
        .and_then(|mut statement| {
            let rows = statement.query_map(params![from, SEARCH_BATCH as i64], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            })?;
            rows.collect()
        })
        .map_err(map_error)?;
    let Some(last) = events.last().map(|event| event.0) else {
        return Ok(0);
    };
    for (position, event_type, state_key, pdu_json, skipped) in &events {
        if !*skipped {
            index_search_text(tx, *position, event_type, state_key.as_deref(), pdu_json)?;
        }
    }
    tx.prepare_cached("UPDATE search_progress SET position = ?1 WHERE id = 1")
        .and_then(|mut statement| statement.execute([last]))
        .map_err(map_error)?;
    Ok(events.len())
}

impl SqliteStore {
    /// Brings the full-text index up to every event stored so far.
    pub(crate) async fn catch_up_search(&self) -> StoreResult<()> {
        while self.write(index_search_batch).await? == SEARCH_BATCH {}
        Ok(())
    }
}

/// Drops a redacted event from both indexes.
pub(crate) fn unindex_event(tx: &rusqlite::Transaction<'_>, event_id: &str) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM event_relations WHERE event_id = ?1")
        .and_then(|mut statement| statement.execute([event_id]))
        .map_err(map_error)?;
    tx.prepare_cached(
        "DELETE FROM event_search WHERE rowid = (SELECT position FROM events WHERE event_id = ?1)",
    )
    .and_then(|mut statement| statement.execute([event_id]))
    .map_err(map_error)?;
    Ok(())
}

/// The FTS5 query for the words: each one quoted, all of them required.
fn match_expression(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"", word.replace('"', "")))
        .collect::<Vec<_>>()
        .join(" AND ")
}

#[async_trait]
impl RelationStore for SqliteStore {
    async fn relations(&self, query: &RelationQuery) -> StoreResult<Vec<StoredEvent>> {
        let query = query.clone();
        self.read(move |conn| {
            let depth = if query.recurse { MAX_RELATION_DEPTH } else { 1 };
            let (order, lower, upper) = match query.direction {
                Direction::Backward => ("DESC", query.to.map_or(i64::MIN, |to| to.0), query.from.0),
                Direction::Forward => ("ASC", query.from.0, upto(query.to)),
            };
            let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
            let mut statement = conn.prepare_cached(&format!(
                "WITH RECURSIVE related(event_id, depth) AS (
                     SELECT event_id, 1 FROM event_relations WHERE parent_id = ?1 AND room_id = ?2
                     UNION
                     SELECT r.event_id, related.depth + 1 FROM event_relations AS r
                     JOIN related ON r.parent_id = related.event_id
                     WHERE r.room_id = ?2 AND related.depth < ?3
                 )
                 SELECT {COLUMNS} FROM events JOIN event_relations AS rel ON rel.event_id = events.event_id
                 WHERE events.event_id IN (SELECT event_id FROM related)
                   AND (?4 IS NULL OR rel.rel_type = ?4) AND (?5 IS NULL OR events.event_type = ?5)
                   AND events.position > ?6 AND events.position <= ?7
                 ORDER BY events.position {order} LIMIT ?8"
            ))?;
            let rows = statement.query_map(
                params![
                    query.event_id,
                    query.room_id,
                    depth,
                    query.rel_type,
                    query.event_type,
                    lower,
                    upper,
                    limit
                ],
                event_from_row,
            )?;
            rows.collect()
        })
        .await
    }

    async fn related_parents(
        &self,
        event_ids: &[String],
        upto_position: Option<StreamPosition>,
    ) -> StoreResult<Vec<(String, String)>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_list(event_ids);
        let bound = upto(upto_position);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT DISTINCT parent_id, rel_type FROM event_relations
                 WHERE parent_id IN (SELECT value FROM json_each(?1)) AND position <= ?2
                 ORDER BY parent_id, rel_type",
            )?;
            let rows =
                statement.query_map(params![ids, bound], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn latest_edit(
        &self,
        room_id: &str,
        event_id: &str,
        sender: &str,
        event_type: &str,
        upto_position: Option<StreamPosition>,
    ) -> StoreResult<Option<StoredEvent>> {
        let (room_id, event_id, sender, event_type) = (
            room_id.to_owned(),
            event_id.to_owned(),
            sender.to_owned(),
            event_type.to_owned(),
        );
        let bound = upto(upto_position);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM event_relations AS rel JOIN events ON events.event_id = rel.event_id
                 WHERE rel.parent_id = ?1 AND rel.rel_type = 'm.replace' AND rel.sender = ?2
                   AND rel.event_type = ?3 AND rel.position <= ?4 AND rel.room_id = ?5
                 ORDER BY rel.origin_server_ts DESC, rel.event_id DESC LIMIT 1"
            ))
            .and_then(|mut statement| {
                statement.query_row(
                    params![event_id, sender, event_type, bound, room_id],
                    event_from_row,
                )
            })
            .optional()
        })
        .await
    }

    async fn thread_summary(
        &self,
        room_id: &str,
        root_id: &str,
        user_id: &str,
        visible: &[(TimelinePoint, Option<TimelinePoint>)],
    ) -> StoreResult<Option<ThreadSummary>> {
        let visible = point_ranges(visible.iter().map(|(after, to)| (room_id, *after, *to)));
        let (room_id, root_id, user_id) =
            (room_id.to_owned(), root_id.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            let (count, latest, replied): (i64, Option<i64>, i64) = conn
                .prepare_cached(
                    "SELECT COUNT(*), MAX(rel.position), COALESCE(MAX(rel.sender = ?2), 0)
                     FROM event_relations AS rel
                     JOIN events AS e ON e.position = rel.position
                     JOIN json_each(?5) AS visible
                       ON (e.slot, e.position) > (json_extract(visible.value, '$[1]'),
                                                  json_extract(visible.value, '$[2]'))
                      AND (e.slot, e.position) <= (json_extract(visible.value, '$[3]'),
                                                   json_extract(visible.value, '$[4]'))
                     WHERE rel.parent_id = ?1 AND rel.rel_type = ?3 AND rel.room_id = ?4",
                )?
                .query_row(params![root_id, user_id, THREAD, room_id, visible], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?;
            let Some(latest) = latest else {
                return Ok(None);
            };
            let latest = conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE position = ?1"))?
                .query_row([latest], event_from_row)?;
            Ok(Some(ThreadSummary {
                count: count.max(0) as u64,
                latest,
                user_replied: replied != 0,
            }))
        })
        .await
    }

    async fn threads(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: Option<StreamPosition>,
        upto_position: Option<StreamPosition>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadRoot>> {
        let room_id = room_id.to_owned();
        let participant = participant.map(str::to_owned);
        let before = upto(before);
        let bound = upto(upto_position);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS}, thread.latest FROM (
                     SELECT parent_id, MAX(position) AS latest FROM event_relations
                     WHERE room_id = ?1 AND rel_type = ?2 AND position <= ?3 GROUP BY parent_id
                 ) AS thread JOIN events ON events.event_id = thread.parent_id AND events.room_id = ?1
                 WHERE thread.latest < ?4
                   AND (?5 IS NULL OR events.sender = ?5 OR EXISTS (
                       SELECT 1 FROM event_relations AS reply WHERE reply.parent_id = thread.parent_id
                       AND reply.rel_type = ?2 AND reply.sender = ?5 AND reply.position <= ?3))
                 ORDER BY thread.latest DESC LIMIT ?6"
            ))?;
            let rows = statement.query_map(
                params![room_id, THREAD, bound, before, participant, limit],
                |row| {
                    Ok(ThreadRoot {
                        root: event_from_row(row)?,
                        latest_position: StreamPosition(row.get(16)?),
                    })
                },
            )?;
            rows.collect()
        })
        .await
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<SearchPage> {
        if query.words.is_empty() || query.rooms.is_empty() || query.limit == 0 {
            return Ok(SearchPage {
                hits: Vec::new(),
                count: 0,
            });
        }
        let expression = match_expression(&query.words);
        let rooms = point_ranges(
            query
                .rooms
                .iter()
                .map(|room| (room.room_id.as_str(), room.after, room.upto)),
        );
        let keys = json_list(&query.keys);
        let types = json_list(&query.types);
        let not_types = json_list(&query.not_types);
        let senders = json_list(&query.senders);
        let not_senders = json_list(&query.not_senders);
        let order = match query.order {
            SearchOrder::Rank => "bm25(event_search), events.slot DESC, events.position DESC",
            SearchOrder::Recent => "events.slot DESC, events.position DESC",
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        // A search sees every event stored before it, indexed or not yet.
        self.catch_up_search().await?;
        self.read_in_pool(move |conn| {
            let from_where = "FROM event_search
                 JOIN events ON events.position = event_search.rowid
                 JOIN json_each(?2) AS allowed
                   ON events.room_id = json_extract(allowed.value, '$[0]')
                  AND (events.slot, events.position) > (json_extract(allowed.value, '$[1]'),
                                                        json_extract(allowed.value, '$[2]'))
                  AND (events.slot, events.position) <= (json_extract(allowed.value, '$[3]'),
                                                         json_extract(allowed.value, '$[4]'))
                 WHERE event_search MATCH ?1 AND NOT events.outlier
                   AND (json_array_length(?3) = 0 OR event_search.key IN (SELECT value FROM json_each(?3)))
                   AND (json_array_length(?4) = 0 OR events.event_type IN (SELECT value FROM json_each(?4)))
                   AND events.event_type NOT IN (SELECT value FROM json_each(?5))
                   AND (json_array_length(?6) = 0 OR events.sender IN (SELECT value FROM json_each(?6)))
                   AND events.sender NOT IN (SELECT value FROM json_each(?7))";
            let filters = params![expression, rooms, keys, types, not_types, senders, not_senders];
            let count: i64 = conn
                .prepare_cached(&format!("SELECT COUNT(*) {from_where}"))?
                .query_row(filters, |row| row.get(0))?;
            let mut statement = conn.prepare_cached(&format!(
                "SELECT {COLUMNS}, -bm25(event_search) {from_where} ORDER BY {order} LIMIT ?8 OFFSET ?9"
            ))?;
            let rows = statement.query_map(
                params![
                    expression,
                    rooms,
                    keys,
                    types,
                    not_types,
                    senders,
                    not_senders,
                    limit,
                    offset
                ],
                |row| {
                    Ok(SearchHit {
                        event: event_from_row(row)?,
                        rank: row.get(16)?,
                    })
                },
            )?;
            Ok(SearchPage {
                hits: rows.collect::<rusqlite::Result<_>>()?,
                count: count.max(0) as u64,
            })
        })
        .await
    }
}

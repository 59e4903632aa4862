//! The relation and full-text indexes (`tsvector` with a GIN index),
//! written with each event.

use async_trait::async_trait;
use myelin_store::{
    Direction, IndexedEvent, MAX_RELATION_DEPTH, RelationQuery, RelationStore, SearchHit,
    SearchOrder, SearchPage, SearchQuery, StoreResult, StoredEvent, THREAD, ThreadRoot,
    ThreadSummary,
};
use myelin_types::{StreamPosition, TimelinePoint};

use crate::events::event_from_row;
use crate::pipeline::{Pipeline, params};
use crate::{PostgresStore, get};

/// The event columns of `events`, named through the table for joins.
const COLUMNS: &str = "events.position, events.event_id, events.room_id, events.sender, \
     events.event_type, events.state_key, events.depth, events.origin_server_ts, \
     events.pdu_json, events.txn_user_id, events.txn_device_id, events.txn_id, \
     events.redacted_by, \
     (SELECT r.pdu_json FROM events AS r WHERE r.event_id = events.redacted_by), events.slot, \
     events.opens_gap";

/// Ranges of timeline points as four arrays for `unnest`: the slots and
/// positions they start after, and those they end at (the end of the
/// timeline where open).
fn point_ranges(
    ranges: &[(TimelinePoint, Option<TimelinePoint>)],
) -> (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>) {
    let upto = |upto: &Option<TimelinePoint>| upto.unwrap_or(TimelinePoint::AFTER_ALL);
    (
        ranges.iter().map(|(after, _)| after.slot.0).collect(),
        ranges.iter().map(|(after, _)| after.position.0).collect(),
        ranges.iter().map(|(_, to)| upto(to).slot.0).collect(),
        ranges.iter().map(|(_, to)| upto(to).position.0).collect(),
    )
}

fn upto(position: Option<StreamPosition>) -> i64 {
    position.map_or(i64::MAX, |position| position.0)
}

/// Queues the indexing of an event written before it in the transaction;
/// the index rows take the event's position.
pub(crate) fn queue_index(pipeline: &mut Pipeline<'_>, event: &IndexedEvent<'_>) {
    let index = event.index();
    if let Some(relation) = index.relation {
        pipeline.push(
            "INSERT INTO event_relations (event_id, room_id, parent_id, rel_type, event_type,
                 sender, origin_server_ts, position)
             SELECT $1, $2, $3, $4, $5, $6, $7, position FROM events WHERE event_id = $1
             ON CONFLICT (event_id) DO NOTHING",
            params![
                event.event_id.to_owned(),
                event.room_id.to_owned(),
                relation.parent_id,
                relation.rel_type,
                event.event_type.to_owned(),
                event.sender.to_owned(),
                event.origin_server_ts,
            ],
        );
    }
    if let Some(search) = index.search {
        pipeline.push(
            "INSERT INTO event_search (position, key, vector)
             SELECT position, $2, to_tsvector('simple', $3) FROM events WHERE event_id = $1",
            params![event.event_id.to_owned(), search.key, search.text],
        );
    }
}

/// Queues dropping a redacted event from both indexes.
pub(crate) fn queue_unindex<'a>(pipeline: &mut Pipeline<'a>, event_id: &'a str) {
    pipeline.push(
        "DELETE FROM event_relations WHERE event_id = $1",
        params![event_id],
    );
    pipeline.push(
        "DELETE FROM event_search WHERE position = (SELECT position FROM events WHERE event_id = $1)",
        params![event_id],
    );
}

/// The `to_tsquery` text for the words: each one quoted, all required.
fn tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("'{}'", word.replace(['\'', '\\'], "")))
        .collect::<Vec<_>>()
        .join(" & ")
}

#[async_trait]
impl RelationStore for PostgresStore {
    async fn relations(&self, query: &RelationQuery) -> StoreResult<Vec<StoredEvent>> {
        let depth = i32::try_from(if query.recurse { MAX_RELATION_DEPTH } else { 1 }).unwrap_or(1);
        let (order, lower, upper) = match query.direction {
            Direction::Backward => ("DESC", query.to.map_or(i64::MIN, |to| to.0), query.from.0),
            Direction::Forward => ("ASC", query.from.0, upto(query.to)),
        };
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "WITH RECURSIVE related(event_id, depth) AS (
                     SELECT event_id, 1 FROM event_relations WHERE parent_id = $1 AND room_id = $2
                     UNION
                     SELECT r.event_id, related.depth + 1 FROM event_relations AS r
                     JOIN related ON r.parent_id = related.event_id
                     WHERE r.room_id = $2 AND related.depth < $3
                 )
                 SELECT {COLUMNS} FROM events JOIN event_relations AS rel ON rel.event_id = events.event_id
                 WHERE events.event_id IN (SELECT event_id FROM related)
                   AND ($4::text IS NULL OR rel.rel_type = $4::text)
                   AND ($5::text IS NULL OR events.event_type = $5::text)
                   AND events.position > $6 AND events.position <= $7
                 ORDER BY events.position {order} LIMIT $8"
            ),
            &[
                &query.event_id,
                &query.room_id,
                &depth,
                &query.rel_type,
                &query.event_type,
                &lower,
                &upper,
                &limit,
            ],
            event_from_row,
        )
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
        let ids = event_ids.to_vec();
        self.query(
            "SELECT DISTINCT parent_id, rel_type FROM event_relations
             WHERE parent_id = ANY($1) AND position <= $2
             ORDER BY parent_id, rel_type",
            &[&ids, &upto(upto_position)],
            |row| Ok((get(row, 0)?, get(row, 1)?)),
        )
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
        self.query_opt(
            &format!(
                r#"SELECT {COLUMNS} FROM event_relations AS rel JOIN events ON events.event_id = rel.event_id
                   WHERE rel.parent_id = $1 AND rel.rel_type = 'm.replace' AND rel.sender = $2
                     AND rel.event_type = $3 AND rel.position <= $4 AND rel.room_id = $5
                   ORDER BY rel.origin_server_ts DESC, rel.event_id COLLATE "C" DESC LIMIT 1"#
            ),
            &[&event_id, &sender, &event_type, &upto(upto_position), &room_id],
            event_from_row,
        )
        .await
    }

    async fn thread_summary(
        &self,
        room_id: &str,
        root_id: &str,
        user_id: &str,
        visible: &[(TimelinePoint, Option<TimelinePoint>)],
    ) -> StoreResult<Option<ThreadSummary>> {
        let (after_slots, after_positions, upto_slots, upto_positions) = point_ranges(visible);
        let summary = self
            .query_opt(
                "SELECT COUNT(*), MAX(rel.position), COALESCE(bool_or(rel.sender = $2), false)
                 FROM event_relations AS rel
                 JOIN events AS e ON e.position = rel.position
                 JOIN unnest($5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                   AS visible(after_slot, after_position, upto_slot, upto_position)
                   ON (e.slot, e.position) > (visible.after_slot, visible.after_position)
                  AND (e.slot, e.position) <= (visible.upto_slot, visible.upto_position)
                 WHERE rel.parent_id = $1 AND rel.rel_type = $3 AND rel.room_id = $4",
                &[
                    &root_id,
                    &user_id,
                    &THREAD,
                    &room_id,
                    &after_slots,
                    &after_positions,
                    &upto_slots,
                    &upto_positions,
                ],
                |row| {
                    Ok((
                        get::<i64>(row, 0)?,
                        get::<Option<i64>>(row, 1)?,
                        get::<bool>(row, 2)?,
                    ))
                },
            )
            .await?;
        let Some((count, Some(latest), user_replied)) = summary else {
            return Ok(None);
        };
        let latest = self
            .query_opt(
                &format!("SELECT {COLUMNS} FROM events WHERE position = $1"),
                &[&latest],
                event_from_row,
            )
            .await?;
        Ok(latest.map(|latest| ThreadSummary {
            count: count.max(0) as u64,
            latest,
            user_replied,
        }))
    }

    async fn threads(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: Option<StreamPosition>,
        upto_position: Option<StreamPosition>,
        limit: usize,
    ) -> StoreResult<Vec<ThreadRoot>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.query(
            &format!(
                "SELECT {COLUMNS}, thread.latest FROM (
                     SELECT parent_id, MAX(position) AS latest FROM event_relations
                     WHERE room_id = $1 AND rel_type = $2 AND position <= $3 GROUP BY parent_id
                 ) AS thread JOIN events ON events.event_id = thread.parent_id AND events.room_id = $1
                 WHERE thread.latest < $4
                   AND ($5::text IS NULL OR events.sender = $5::text OR EXISTS (
                       SELECT 1 FROM event_relations AS reply WHERE reply.parent_id = thread.parent_id
                       AND reply.rel_type = $2 AND reply.sender = $5::text AND reply.position <= $3))
                 ORDER BY thread.latest DESC LIMIT $6"
            ),
            &[
                &room_id,
                &THREAD,
                &upto(upto_position),
                &upto(before),
                &participant,
                &limit,
            ],
            |row| {
                Ok(ThreadRoot {
                    root: event_from_row(row)?,
                    latest_position: StreamPosition(get(row, 16)?),
                })
            },
        )
        .await
    }

    async fn search(&self, query: &SearchQuery) -> StoreResult<SearchPage> {
        if query.words.is_empty() || query.rooms.is_empty() || query.limit == 0 {
            return Ok(SearchPage {
                hits: Vec::new(),
                count: 0,
            });
        }
        let text = tsquery(&query.words);
        let room_ids: Vec<&str> = query
            .rooms
            .iter()
            .map(|room| room.room_id.as_str())
            .collect();
        let stretches: Vec<(TimelinePoint, Option<TimelinePoint>)> = query
            .rooms
            .iter()
            .map(|room| (room.after, room.upto))
            .collect();
        let (after_slots, after_positions, upto_slots, upto_positions) = point_ranges(&stretches);
        let order = match query.order {
            SearchOrder::Rank => "rank DESC, events.slot DESC, events.position DESC",
            SearchOrder::Recent => "events.slot DESC, events.position DESC",
        };
        let from_where = "FROM event_search
             JOIN events ON events.position = event_search.position
             JOIN unnest($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
               AS allowed(room_id, after_slot, after_position, upto_slot, upto_position)
               ON events.room_id = allowed.room_id
              AND (events.slot, events.position) > (allowed.after_slot, allowed.after_position)
              AND (events.slot, events.position) <= (allowed.upto_slot, allowed.upto_position)
             WHERE event_search.vector @@ to_tsquery('simple', $1)
               AND (cardinality($7::text[]) = 0 OR event_search.key = ANY($7::text[]))
               AND (cardinality($8::text[]) = 0 OR events.event_type = ANY($8::text[]))
               AND NOT (events.event_type = ANY($9::text[]))
               AND (cardinality($10::text[]) = 0 OR events.sender = ANY($10::text[]))
               AND NOT (events.sender = ANY($11::text[]))";
        let count: i64 = self
            .query_opt(
                &format!("SELECT COUNT(*) {from_where}"),
                &[
                    &text,
                    &room_ids,
                    &after_slots,
                    &after_positions,
                    &upto_slots,
                    &upto_positions,
                    &query.keys,
                    &query.types,
                    &query.not_types,
                    &query.senders,
                    &query.not_senders,
                ],
                |row| get(row, 0),
            )
            .await?
            .unwrap_or(0);
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let hits = self
            .query(
                &format!(
                    "SELECT {COLUMNS}, ts_rank(event_search.vector, to_tsquery('simple', $1))::float8 AS rank
                     {from_where} ORDER BY {order} LIMIT $12 OFFSET $13"
                ),
                &[
                    &text,
                    &room_ids,
                    &after_slots,
                    &after_positions,
                    &upto_slots,
                    &upto_positions,
                    &query.keys,
                    &query.types,
                    &query.not_types,
                    &query.senders,
                    &query.not_senders,
                    &limit,
                    &offset,
                ],
                |row| {
                    Ok(SearchHit {
                        event: event_from_row(row)?,
                        rank: get(row, 16)?,
                    })
                },
            )
            .await?;
        Ok(SearchPage {
            hits,
            count: count.max(0) as u64,
        })
    }
}

//! Bundled aggregations: what an event's relations add to its
//! `unsigned["m.relations"]` when it is served to a client.
//!
//! - `m.replace`: the newest edit by the original sender, as a whole event,
//!   unless the original was redacted. The original's content stays as it
//!   is (servers no longer apply edits).
//! - `m.thread`: the reply count, the newest reply, and whether the viewer
//!   started the thread or replied.
//! - `m.reference`: the IDs of events referencing it.
//!
//! Only related events the viewer may see by history visibility count.

use myelin_store::{Direction, RelationQuery, Store, StoreResult, StoredEvent, THREAD};
use myelin_types::{StreamPosition, TimelinePoint};
use serde_json::{Map, Value, json};

use crate::client_format::stored_client_event;
use crate::visibility::HistoryView;

/// Most references listed in one event's `m.reference` aggregation.
pub const MAX_BUNDLED_REFERENCES: usize = 50;

const REPLACE: &str = "m.replace";
const REFERENCE: &str = "m.reference";

/// Who the aggregations are built for.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user_id: &'a str,
    /// The device, for `transaction_id` on the viewer's own related events.
    pub device_id: Option<&'a str>,
    /// Nothing after this position counts (a former member's leave).
    pub upto: Option<StreamPosition>,
}

/// Adds the bundled aggregations to client events of one room (as
/// [`stored_client_event`] makes them), in place.
pub async fn bundle_aggregations(
    store: &dyn Store,
    room_id: &str,
    viewer: Viewer<'_>,
    events: &mut [Value],
) -> StoreResult<()> {
    let ids: Vec<String> = events
        .iter()
        .filter_map(|event| event.get("event_id")?.as_str().map(str::to_owned))
        .collect();
    let parents = store.related_parents(&ids, viewer.upto).await?;
    if parents.is_empty() {
        return Ok(());
    }
    let view = HistoryView::load(store, room_id, viewer.user_id).await?;
    let may_see = |event: &StoredEvent| {
        event.room_id == room_id
            && viewer
                .upto
                .is_none_or(|upto| event.point() <= TimelinePoint::of_stream(upto))
            && view.may_see(event)
    };
    // Thread replies are ordinary events: counted only where the viewer
    // may see them.
    let visible = clip_ranges(
        view.visible_ranges(),
        viewer.upto.map(TimelinePoint::of_stream),
    );
    let client_viewer = viewer
        .device_id
        .map(|device_id| (viewer.user_id, device_id));
    for event in events.iter_mut() {
        let Some(event_id) = event.get("event_id").and_then(Value::as_str) else {
            continue;
        };
        let has = |rel_type: &str| {
            parents
                .iter()
                .any(|(parent, kind)| parent == event_id && kind == rel_type)
        };
        let mut relations = Map::new();
        if has(REPLACE)
            && let Some(edit) = edit_of(store, room_id, event, viewer, &may_see).await?
        {
            relations.insert(REPLACE.to_owned(), edit);
        }
        if has(THREAD)
            && let Some(summary) = store
                .thread_summary(room_id, event_id, viewer.user_id, &visible)
                .await?
            && may_see(&summary.latest)
        {
            let participated = summary.user_replied || text(event, "sender") == viewer.user_id;
            // The newest reply comes with its own newest edit.
            let mut latest = stored_client_event(&summary.latest, client_viewer);
            if let Some(edit) = edit_of(store, room_id, &latest, viewer, &may_see).await? {
                latest["unsigned"]["m.relations"] = json!({ REPLACE: edit });
            }
            relations.insert(
                THREAD.to_owned(),
                json!({
                    "latest_event": latest,
                    "count": summary.count,
                    "current_user_participated": participated,
                }),
            );
        }
        if has(REFERENCE) {
            let query = RelationQuery {
                room_id: room_id.to_owned(),
                event_id: event_id.to_owned(),
                rel_type: Some(REFERENCE.to_owned()),
                event_type: None,
                from: StreamPosition::BEFORE_ALL,
                to: viewer.upto,
                direction: Direction::Forward,
                limit: MAX_BUNDLED_REFERENCES,
                recurse: false,
            };
            let chunk: Vec<Value> = store
                .relations(&query)
                .await?
                .iter()
                .filter(|reference| may_see(reference))
                .map(|reference| json!({"event_id": reference.event_id}))
                .collect();
            if !chunk.is_empty() {
                relations.insert(REFERENCE.to_owned(), json!({"chunk": chunk}));
            }
        }
        if relations.is_empty() {
            continue;
        }
        if let Some(object) = event.as_object_mut() {
            let unsigned = object
                .entry("unsigned")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(unsigned) = unsigned.as_object_mut() {
                unsigned.insert("m.relations".to_owned(), Value::Object(relations));
            }
        }
    }
    Ok(())
}

/// The ranges `(after, upto]`, cut off at `limit` (a former member's leave).
fn clip_ranges(
    ranges: Vec<(TimelinePoint, Option<TimelinePoint>)>,
    limit: Option<TimelinePoint>,
) -> Vec<(TimelinePoint, Option<TimelinePoint>)> {
    let Some(limit) = limit else {
        return ranges;
    };
    ranges
        .into_iter()
        .filter(|(after, _)| *after < limit)
        .map(|(after, upto)| (after, Some(upto.map_or(limit, |upto| upto.min(limit)))))
        .collect()
}

/// The newest valid edit of a client event that the viewer may see, as a
/// client event.
async fn edit_of(
    store: &dyn Store,
    room_id: &str,
    event: &Value,
    viewer: Viewer<'_>,
    may_see: &(dyn Fn(&StoredEvent) -> bool + Sync),
) -> StoreResult<Option<Value>> {
    let Some(event_id) = event.get("event_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    if !may_be_edited(event) {
        return Ok(None);
    }
    // A redacted original keeps no edit, whatever became of the edits.
    if store
        .event(event_id)
        .await?
        .is_none_or(|original| original.redacted_by.is_some())
    {
        return Ok(None);
    }
    let edit = store
        .latest_edit(
            room_id,
            event_id,
            &text(event, "sender"),
            &text(event, "type"),
            viewer.upto,
        )
        .await?
        .filter(|edit| may_see(edit) && has_new_content(&edit.pdu_json));
    let client_viewer = viewer
        .device_id
        .map(|device_id| (viewer.user_id, device_id));
    Ok(edit.map(|edit| stored_client_event(&edit, client_viewer)))
}

fn text(event: &Value, key: &str) -> String {
    event
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Whether a replacement carries the new content (`m.new_content`), as a
/// valid one must.
fn has_new_content(pdu_json: &str) -> bool {
    serde_json::from_str::<Value>(pdu_json).is_ok_and(|pdu| {
        pdu.pointer("/content/m.new_content")
            .is_some_and(Value::is_object)
    })
}

/// Whether edits apply to the event: not a state event, and not an edit
/// itself.
fn may_be_edited(event: &Value) -> bool {
    let is_edit = event
        .pointer("/content/m.relates_to/rel_type")
        .and_then(Value::as_str)
        == Some(REPLACE);
    event.get("state_key").is_none() && !is_edit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stop_at_a_former_members_leave() {
        let p = |at: i64| TimelinePoint::of_stream(StreamPosition(at));
        let ranges = vec![(p(0), Some(p(5))), (p(8), Some(p(12))), (p(20), None)];
        assert_eq!(clip_ranges(ranges.clone(), None), ranges);
        assert_eq!(
            clip_ranges(ranges.clone(), Some(p(10))),
            vec![(p(0), Some(p(5))), (p(8), Some(p(10)))]
        );
        assert_eq!(
            clip_ranges(ranges, Some(p(30))),
            vec![
                (p(0), Some(p(5))),
                (p(8), Some(p(12))),
                (p(20), Some(p(30)))
            ]
        );
    }

    #[test]
    fn replacements_need_new_content() {
        assert!(has_new_content(
            r#"{"content":{"m.new_content":{"body":"x"}}}"#
        ));
        assert!(!has_new_content(r#"{"content":{"m.new_content":"x"}}"#));
        assert!(!has_new_content(r#"{"content":{"body":"x"}}"#));
        assert!(!has_new_content("{"));
    }

    #[test]
    fn state_events_and_edits_are_not_edited() {
        assert!(may_be_edited(
            &json!({"type": "m.room.message", "content": {"body": "x"}})
        ));
        assert!(!may_be_edited(
            &json!({"type": "m.room.topic", "state_key": "", "content": {}})
        ));
        assert!(!may_be_edited(&json!({"type": "m.room.message",
            "content": {"m.relates_to": {"rel_type": "m.replace", "event_id": "$a"}}})));
    }
}

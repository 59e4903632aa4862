//! The snapshots written with each event: the state it was authorized
//! against and the state after it.

use myelin_room::RoomState;
use myelin_store::{EventSnapshots, MAX_SNAPSHOT_CHAIN, NewSnapshot, StateEntry};

/// The snapshot that holds a room head's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSnapshot {
    pub id: String,
    pub chain_length: i64,
}

/// The name of the snapshot before an event when no existing one holds that
/// state (the room's first event, a room from before snapshots, branches
/// that met).
pub(crate) fn before_name(event_id: &str) -> String {
    format!("^{event_id}")
}

pub(crate) fn entries_of(state: &RoomState) -> Vec<StateEntry> {
    state
        .iter()
        .map(|((event_type, state_key), pdu)| StateEntry {
            event_type: event_type.clone(),
            state_key: state_key.clone(),
            event_id: pdu.event_id.to_string(),
        })
        .collect()
}

/// The snapshots for an event written on a head whose state is `state` and
/// whose snapshot is `head` (`None` when it has none yet), and the snapshot
/// the head has after it.
pub(crate) fn around_event(
    head: Option<&HeadSnapshot>,
    state: &RoomState,
    event_id: &str,
    state_key: Option<(&str, &str)>,
) -> (EventSnapshots, HeadSnapshot) {
    let mut new = Vec::new();
    let before = match head {
        Some(head) => head.clone(),
        None => {
            let id = before_name(event_id);
            new.push(NewSnapshot {
                snapshot_id: id.clone(),
                base_id: None,
                chain_length: 0,
                entries: entries_of(state),
            });
            HeadSnapshot {
                id,
                chain_length: 0,
            }
        }
    };
    let after = match state_key {
        None => before.clone(),
        Some((event_type, state_key)) => {
            let added = StateEntry {
                event_type: event_type.to_owned(),
                state_key: state_key.to_owned(),
                event_id: event_id.to_owned(),
            };
            let chain_length = before.chain_length + 1;
            let snapshot = if chain_length >= MAX_SNAPSHOT_CHAIN {
                // A complete snapshot keeps every read to a bounded walk.
                let mut entries: Vec<StateEntry> = entries_of(state)
                    .into_iter()
                    .filter(|entry| entry.event_type != event_type || entry.state_key != state_key)
                    .collect();
                entries.push(added);
                NewSnapshot {
                    snapshot_id: event_id.to_owned(),
                    base_id: None,
                    chain_length: 0,
                    entries,
                }
            } else {
                NewSnapshot {
                    snapshot_id: event_id.to_owned(),
                    base_id: Some(before.id.clone()),
                    chain_length,
                    entries: vec![added],
                }
            };
            let after = HeadSnapshot {
                id: snapshot.snapshot_id.clone(),
                chain_length: snapshot.chain_length,
            };
            new.push(snapshot);
            after
        }
    };
    (
        EventSnapshots {
            before: before.id,
            after: after.id.clone(),
            new,
        },
        after,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(id: &str, chain_length: i64) -> HeadSnapshot {
        HeadSnapshot {
            id: id.to_owned(),
            chain_length,
        }
    }

    #[test]
    fn a_message_shares_the_heads_snapshot() {
        let (snapshots, after) = around_event(Some(&head("$s", 3)), &RoomState::new(), "$m", None);
        assert_eq!(
            (snapshots.before.as_str(), snapshots.after.as_str()),
            ("$s", "$s")
        );
        assert!(snapshots.new.is_empty());
        assert_eq!(after, head("$s", 3));
    }

    #[test]
    fn a_state_event_adds_one_entry_on_the_head() {
        let (snapshots, after) = around_event(
            Some(&head("$s", 3)),
            &RoomState::new(),
            "$t",
            Some(("m.room.topic", "")),
        );
        assert_eq!(snapshots.before, "$s");
        assert_eq!(snapshots.after, "$t");
        assert_eq!(snapshots.new.len(), 1);
        assert_eq!(snapshots.new[0].base_id.as_deref(), Some("$s"));
        assert_eq!(snapshots.new[0].entries.len(), 1);
        assert_eq!(after, head("$t", 4));
    }

    #[test]
    fn a_long_chain_is_cut_by_a_complete_snapshot() {
        let (snapshots, after) = around_event(
            Some(&head("$s", MAX_SNAPSHOT_CHAIN - 1)),
            &RoomState::new(),
            "$t",
            Some(("m.room.topic", "")),
        );
        assert_eq!(snapshots.new[0].base_id, None);
        assert_eq!(after, head("$t", 0));
    }

    #[test]
    fn a_head_without_a_snapshot_gets_a_complete_one_first() {
        let (snapshots, after) =
            around_event(None, &RoomState::new(), "$c", Some(("m.room.create", "")));
        assert_eq!(snapshots.before, "^$c");
        assert_eq!(snapshots.new.len(), 2);
        assert_eq!(snapshots.new[0].snapshot_id, "^$c");
        assert_eq!(snapshots.new[1].base_id.as_deref(), Some("^$c"));
        assert_eq!(after, head("$c", 1));
    }
}

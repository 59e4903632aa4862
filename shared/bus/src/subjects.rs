//! Every subject and stream of the bus, in one place.
//!
//! Names here carry no deployment prefix; an implementation that shares a
//! server between deployments (NATS) prepends its own.

use myelin_types::Partition;

/// A durable stream and the subjects it stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: &'static str,
    pub subjects: &'static [&'static str],
}

/// Events as they are persisted, in stream order per partition.
pub const PERSISTED_EVENTS: StreamSpec = StreamSpec {
    name: "PERSISTED_EVENTS",
    subjects: &["persisted.>"],
};

/// Every durable stream, so an implementation can create them at start.
pub const ALL_STREAMS: &[StreamSpec] = &[PERSISTED_EVENTS];

/// Requests to the writer of a room: send an event, create a room.
pub fn room_input(partition: Partition) -> String {
    format!("room_input.{partition}")
}

/// Every partition's room input, for a writer that owns them all.
pub const ALL_ROOM_INPUT: &str = "room_input.*";

/// The announcement that an event was persisted.
pub fn persisted_event(partition: Partition) -> String {
    format!("persisted.{partition}")
}

/// Every persisted event, whatever its partition.
pub const ALL_PERSISTED_EVENTS: &str = "persisted.>";

/// The queue group of the event persisters.
pub const EVENT_PERSISTERS: &str = "event-persisters";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject_matches;

    #[test]
    fn wildcards_cover_every_partition() {
        let partition = Partition(17);
        assert!(subject_matches(ALL_ROOM_INPUT, &room_input(partition)));
        assert!(subject_matches(
            ALL_PERSISTED_EVENTS,
            &persisted_event(partition)
        ));
        assert!(
            PERSISTED_EVENTS
                .subjects
                .iter()
                .any(|s| subject_matches(s, &persisted_event(partition)))
        );
    }
}

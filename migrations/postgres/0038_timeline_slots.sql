-- A room's timeline is read in the order of `(slot, position)`. Live
-- events, and history fetched from before a room's oldest event, have their
-- position as slot. History fetched later into a gap (paging back reached
-- an event whose prev_events are not here, with older events below it)
-- takes the slot of the event just after the gap (`gap_slot`) and positions
-- below zero, so it sits in the gap, oldest first.
ALTER TABLE events ADD COLUMN gap_slot BIGINT;
ALTER TABLE events ADD COLUMN slot BIGINT
    GENERATED ALWAYS AS (COALESCE(gap_slot, position)) STORED;
CREATE INDEX events_by_room_slot ON events (room_id, slot, position);

-- An outlier kept because it was soft-failed (valid where it was sent, but
-- the room had moved on): fetched history never brings it into the
-- timeline, though other servers' events may cite it.
ALTER TABLE events ADD COLUMN soft_failed BOOLEAN NOT NULL DEFAULT FALSE;

-- An event written with history before it missing: its prev_events were
-- not here and the state its sender's server gave stood in for them (a
-- join of another server's room, or a gap too long to fetch at once). A
-- sync timeline starts at such an event rather than run across the gap.
ALTER TABLE events ADD COLUMN opens_gap BOOLEAN NOT NULL DEFAULT FALSE;

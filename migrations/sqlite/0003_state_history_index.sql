-- Finds a state event as of an earlier stream position (membership at a sync token).
CREATE INDEX events_by_state_key ON events (room_id, event_type, state_key, position);

-- Relations between events (m.relates_to) and the full-text index of
-- message bodies, room names and topics. Both are written with the event
-- and lose a redacted event.

CREATE TABLE event_relations (
    event_id         TEXT PRIMARY KEY,
    room_id          TEXT NOT NULL,
    parent_id        TEXT NOT NULL,
    rel_type         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    sender           TEXT NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    position         INTEGER NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (parent_id, rel_type, position);
CREATE INDEX event_relations_by_room ON event_relations (room_id, rel_type, position);

-- The rowid is the event's position.
CREATE VIRTUAL TABLE event_search USING fts5(text, key UNINDEXED, tokenize = 'unicode61');

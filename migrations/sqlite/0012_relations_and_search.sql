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

-- Events stored before this migration, indexed as new ones are.
INSERT OR IGNORE INTO event_relations (event_id, room_id, parent_id, rel_type, event_type,
                                       sender, origin_server_ts, position)
SELECT event_id, room_id,
       json_extract(pdu_json, '$.content."m.relates_to".event_id'),
       json_extract(pdu_json, '$.content."m.relates_to".rel_type'),
       event_type, sender, origin_server_ts, position
FROM events
WHERE state_key IS NULL AND json_valid(pdu_json)
  AND json_type(pdu_json, '$.content."m.relates_to".event_id') = 'text'
  AND json_type(pdu_json, '$.content."m.relates_to".rel_type') = 'text'
  AND length(CAST(json_extract(pdu_json, '$.content."m.relates_to".event_id') AS BLOB)) BETWEEN 1 AND 255
  AND length(CAST(json_extract(pdu_json, '$.content."m.relates_to".rel_type') AS BLOB)) BETWEEN 1 AND 255;

INSERT INTO event_search (rowid, text, key)
SELECT position, json_extract(pdu_json, '$.content.' || field), 'content.' || field
FROM (
    SELECT position, pdu_json,
           CASE
               WHEN event_type = 'm.room.message' AND state_key IS NULL THEN 'body'
               WHEN event_type = 'm.room.name' AND state_key = '' THEN 'name'
               WHEN event_type = 'm.room.topic' AND state_key = '' THEN 'topic'
           END AS field
    FROM events
    WHERE event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND json_valid(pdu_json)
) AS searchable
WHERE field IS NOT NULL
  AND json_type(pdu_json, '$.content.' || field) = 'text'
  AND trim(json_extract(pdu_json, '$.content.' || field)) <> '';

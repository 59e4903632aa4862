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
    origin_server_ts BIGINT NOT NULL,
    position         BIGINT NOT NULL
);
CREATE INDEX event_relations_by_parent ON event_relations (parent_id, rel_type, position);
CREATE INDEX event_relations_by_room ON event_relations (room_id, rel_type, position);

-- The 'simple' configuration: words as written, lower case, no stemming,
-- as the SQLite index matches them.
CREATE TABLE event_search (
    position BIGINT PRIMARY KEY,
    key      TEXT NOT NULL,
    vector   tsvector NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);

-- Events stored before this migration, indexed as new ones are. A PDU
-- with an escaped NUL cannot be read as jsonb and is left out.
INSERT INTO event_relations (event_id, room_id, parent_id, rel_type, event_type, sender,
                             origin_server_ts, position)
SELECT event_id, room_id, rel ->> 'event_id', rel ->> 'rel_type', event_type, sender,
       origin_server_ts, position
FROM (
    SELECT event_id, room_id, event_type, sender, origin_server_ts, position,
           CASE WHEN strpos(pdu_json, '\u0000') = 0
                THEN (pdu_json::jsonb) -> 'content' -> 'm.relates_to' END AS rel
    FROM events WHERE state_key IS NULL
) AS related
WHERE jsonb_typeof(rel -> 'event_id') = 'string' AND jsonb_typeof(rel -> 'rel_type') = 'string'
  AND octet_length(rel ->> 'event_id') BETWEEN 1 AND 255
  AND octet_length(rel ->> 'rel_type') BETWEEN 1 AND 255
ON CONFLICT (event_id) DO NOTHING;

INSERT INTO event_search (position, key, vector)
SELECT position, 'content.' || field, to_tsvector('simple', content ->> field)
FROM (
    SELECT position, field,
           CASE WHEN strpos(pdu_json, '\u0000') = 0
                THEN (pdu_json::jsonb) -> 'content' END AS content
    FROM (
        SELECT position, pdu_json,
               CASE
                   WHEN event_type = 'm.room.message' AND state_key IS NULL THEN 'body'
                   WHEN event_type = 'm.room.name' AND state_key = '' THEN 'name'
                   WHEN event_type = 'm.room.topic' AND state_key = '' THEN 'topic'
               END AS field
        FROM events
        WHERE event_type IN ('m.room.message', 'm.room.name', 'm.room.topic')
    ) AS typed
    WHERE field IS NOT NULL
) AS searchable
WHERE jsonb_typeof(content -> field) = 'string' AND btrim(content ->> field) <> '';

-- Rooms published in this server's room directory (`/publicRooms`).
CREATE TABLE room_directory (
    room_id      TEXT PRIMARY KEY,
    published_ts BIGINT NOT NULL
);

-- Content reports (`/rooms/{roomId}/report[/{eventId}]`), kept for admins.
CREATE TABLE content_reports (
    report_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     TEXT NOT NULL,
    event_id    TEXT,
    reporter    TEXT NOT NULL,
    reason      TEXT,
    score       BIGINT,
    received_ts BIGINT NOT NULL
);

-- OpenID tokens a user asked for, checked by other servers until they expire.
CREATE TABLE openid_tokens (
    token      TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);

-- Jumping to a date (`/timestamp_to_event`).
CREATE INDEX events_by_room_ts ON events (room_id, origin_server_ts);

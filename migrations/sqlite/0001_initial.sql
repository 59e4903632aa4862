-- Accounts, devices, rooms, events, state, aliases and filters.

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    displayname   TEXT,
    avatar_url    TEXT,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    token     TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX access_tokens_by_device ON access_tokens (user_id, device_id);

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL
);

-- The position is the stream order; AUTOINCREMENT never reuses one.
CREATE TABLE events (
    position         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key        TEXT,
    depth            INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    pdu_json         TEXT NOT NULL,
    txn_user_id      TEXT,
    txn_device_id    TEXT,
    txn_id           TEXT,
    redacted_by      TEXT
);
CREATE INDEX events_by_room ON events (room_id, position);

CREATE TABLE txn_ids (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    membership TEXT,
    position   INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE INDEX current_state_by_member ON current_state (state_key, event_type);

CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    depth    INTEGER NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_by_room ON room_aliases (room_id);

CREATE TABLE filters (
    user_id     TEXT NOT NULL,
    filter_id   INTEGER NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

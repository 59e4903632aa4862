-- Streams other than room events: one counter each. A writer takes the next
-- position as the last step of its transaction and holds the row lock until
-- commit, so positions commit in order and a reader of the counter never
-- names a position below which a change can still commit.
CREATE TABLE stream_counters (
    stream   TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO stream_counters (stream, position) VALUES ('account_data', 0), ('receipts', 0), ('presence', 0);

-- Per-user data kept for clients; room_id '' holds global data.
CREATE TABLE account_data (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content   TEXT NOT NULL,
    position  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_by_position ON account_data (user_id, position);

-- The current receipt per room, type, user and thread; thread_id '' is an
-- unthreaded receipt.
CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    position     BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_by_room_position ON receipts (room_id, position);

-- Who is typing where, until when (ms since the epoch): the synchrotrons
-- keep it in memory and read it here when they start.
CREATE TABLE typing (
    room_id  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- The users each event notifies, written with the event; read receipts
-- mark those at or below them as read. thread_id is 'main' outside threads.
CREATE TABLE event_push_actions (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    position  BIGINT NOT NULL,
    event_id  TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, room_id, position)
);
CREATE INDEX event_push_actions_by_user ON event_push_actions (user_id, position);

-- Each user's presence as last set; status_msg NULL when none.
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    last_active_ts BIGINT NOT NULL,
    position       BIGINT NOT NULL
);
CREATE INDEX presence_by_position ON presence (position);

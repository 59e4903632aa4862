-- HTTP pushers: where a user's notifications go. last_position is how far
-- delivery has come in the stream, so a pusher process that stops resumes
-- where it left off; partition is the user's, for the pusher replicas.
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    device_id           TEXT,
    user_partition      INTEGER NOT NULL,
    created_ts          INTEGER NOT NULL,
    last_position       INTEGER NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_by_key ON pushers (app_id, pushkey);
CREATE INDEX pushers_by_partition ON pushers (user_partition);

-- The sound the rules asked for, passed on to the push gateway.
ALTER TABLE event_push_actions ADD COLUMN sound TEXT;

-- A user's read receipts, for the unread counts of every room at once.
CREATE INDEX receipts_by_user ON receipts (user_id, room_id, thread_id);

-- How far the full-text index has read the events: it is filled in batches,
-- in the background and before each search, rather than in the transaction
-- of every event. Events stored until now were indexed with them.
CREATE TABLE search_progress (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO search_progress (id, position) SELECT 1, COALESCE(MAX(position), 0) FROM events;

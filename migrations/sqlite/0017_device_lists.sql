-- The device-list stream: each time a user's devices or their keys change
-- (keys uploaded or replaced, a device deleted), a row at a new position,
-- written in the same transaction as the change so no tracker misses it.
CREATE TABLE device_list_changes (
    position INTEGER PRIMARY KEY,
    user_id  TEXT NOT NULL
);

INSERT INTO stream_counters (stream, position) VALUES ('device_lists', 0);

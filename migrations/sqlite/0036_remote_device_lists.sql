-- Other servers' users' device lists, kept while they share a room with a
-- user of this server: each is the last full list fetched from their server
-- (`/user/devices`) with the updates applied since. `stream_id` is the
-- position in their server's device-list stream the list stands at; an
-- update that does not follow on from it asks for the whole list again.
CREATE TABLE remote_device_lists (
    user_id   TEXT PRIMARY KEY,
    stream_id INTEGER NOT NULL,
    list_json TEXT NOT NULL
);

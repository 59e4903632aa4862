-- Server-side key backup: each user's backup versions (the newest not
-- deleted is the current one), with an etag that moves whenever the keys
-- in it change.
CREATE TABLE room_key_backup_versions (
    user_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- The backed-up room keys, one per session, as the client encrypted them.
CREATE TABLE room_key_backups (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

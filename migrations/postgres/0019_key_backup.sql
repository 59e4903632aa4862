-- Server-side key backup: each user's backup versions (the newest not
-- deleted is the current one), with an etag that moves whenever the keys
-- in it change.
CREATE TABLE room_key_backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL,
    deleted   BOOLEAN NOT NULL,
    PRIMARY KEY (user_id, version)
);

-- The backed-up room keys, one per session, as the client encrypted them.
CREATE TABLE room_key_backups (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

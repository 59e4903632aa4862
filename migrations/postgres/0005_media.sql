-- Uploaded media of this server. The bytes are in the media store, in a file
-- named by sha256; a row without sha256 is an ID reserved by /create whose
-- upload has not come yet (it expires at pending_expires_ts).
CREATE TABLE media (
    media_id TEXT PRIMARY KEY,
    uploader TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    content_type TEXT,
    upload_name TEXT,
    size BIGINT,
    sha256 TEXT,
    pending_expires_ts BIGINT
);
CREATE INDEX media_pending ON media (uploader, pending_expires_ts)
    WHERE pending_expires_ts IS NOT NULL;

-- Thumbnails made on demand, one per size and method, also content-addressed.
CREATE TABLE media_thumbnails (
    media_id TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width BIGINT NOT NULL,
    height BIGINT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method)
);

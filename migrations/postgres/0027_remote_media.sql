-- Media of other servers, fetched over federation when a local client
-- first asks for it and served from here after that. The bytes live in
-- the same content files as local media (named by their SHA-256).
CREATE TABLE remote_media (
    origin       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    content_type TEXT,
    upload_name  TEXT,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    fetched_ts   BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX remote_media_by_sha256 ON remote_media (sha256);

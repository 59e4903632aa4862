-- Other servers' signing keys. Each server's newest signed key document,
-- kept whole so this server can pass it on as a notary, and every key any
-- document listed, with the longest validity seen.
CREATE TABLE server_key_documents (
    server_name    TEXT PRIMARY KEY,
    document       TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts     BIGINT NOT NULL
);

CREATE TABLE server_verify_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts     BIGINT,
    PRIMARY KEY (server_name, key_id)
);

-- Shared-secret registration nonces already offered, kept until they
-- expire, so each is good for one attempt on whichever replica it reaches.
CREATE TABLE used_registration_nonces (
    nonce TEXT PRIMARY KEY,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX used_registration_nonces_expiry ON used_registration_nonces (expires_ts);

-- Cross-signing: each user's master, self-signing and user-signing keys
-- (canonical JSON, as uploaded and checked).
CREATE TABLE cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded for keys after the fact: a user's devices by their
-- self-signing key, their master key by a device, other users' master
-- keys by their user-signing key. Merged into the keys when served.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);
CREATE INDEX key_signatures_by_signer ON key_signatures (signer_user_id);

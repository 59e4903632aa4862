-- EDUs for other servers (typing notices, read receipts, to-device
-- messages), queued per destination beside its events and sent with the
-- next transaction, so they never wait behind a backlog of events. Several
-- processes queue them at once, so a transaction marks the very rows it
-- carries (txn_id) rather than a range of seq.
CREATE TABLE federation_edu_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    partition   BIGINT NOT NULL,
    edu_json    TEXT NOT NULL,
    txn_id      TEXT
);
CREATE INDEX federation_edu_outbox_by_destination ON federation_edu_outbox (destination, seq);
CREATE INDEX federation_edu_outbox_by_partition ON federation_edu_outbox (partition, destination);

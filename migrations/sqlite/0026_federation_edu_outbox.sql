-- EDUs for other servers (typing notices, read receipts, to-device
-- messages), queued per destination beside its events and sent with the
-- next transaction, so they never wait behind a backlog of events.
CREATE TABLE federation_edu_outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    edu_json    TEXT NOT NULL
);
CREATE INDEX federation_edu_outbox_by_destination ON federation_edu_outbox (destination, seq);
CREATE INDEX federation_edu_outbox_by_partition ON federation_edu_outbox (partition, destination);

-- The last EDU the transaction in flight carries.
ALTER TABLE federation_destinations ADD COLUMN txn_edu_upto INTEGER;

-- Outbound federation. Destinations are hashed to partitions, held by
-- leases like the room partitions. Each partition reads the event log from
-- its cursor and queues this server's events for each destination in the
-- room; a destination's queue is sent in order, at most one transaction at
-- a time, and an entry leaves the queue only once the destination accepted
-- the transaction that carried it.
CREATE TABLE federation_cursors (
    partition BIGINT PRIMARY KEY,
    position  BIGINT NOT NULL
);

-- Nothing written before this migration was ever sent to another server:
-- every partition starts at the end of the log as it stands.
WITH RECURSIVE numbers (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM numbers WHERE n < 63)
INSERT INTO federation_cursors (partition, position)
SELECT n, (SELECT COALESCE(MAX(position), 0) FROM events) FROM numbers;

CREATE TABLE federation_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    partition   BIGINT NOT NULL,
    event_id    TEXT NOT NULL
);
CREATE INDEX federation_outbox_by_destination ON federation_outbox (destination, seq);
CREATE INDEX federation_outbox_by_partition ON federation_outbox (partition, destination);

-- The transaction in flight to each destination (its ID is reused on every
-- retry, also after a restart) and how its retries stand.
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    txn_id      TEXT,
    txn_upto    BIGINT,
    failures    BIGINT NOT NULL DEFAULT 0,
    retry_at    BIGINT
);

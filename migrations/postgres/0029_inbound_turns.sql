-- Whose turn it is to process another server's transactions: one at a
-- time per origin across every federation-api replica. A turn not given
-- back (its replica died) lapses at `expires_at` (ms).
CREATE TABLE inbound_turns (
    origin     TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

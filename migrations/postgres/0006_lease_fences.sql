-- Fencing tokens for leases: every acquisition of a lease key increments its
-- epoch, and a write made under an older epoch is refused, so a writer that
-- lost its lease without noticing cannot write after the next holder began.
CREATE TABLE lease_fences (
    lease_key BIGINT PRIMARY KEY,
    epoch BIGINT NOT NULL
);

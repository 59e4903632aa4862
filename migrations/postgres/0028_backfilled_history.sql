-- History fetched from other servers (backfill) sits below every event this
-- server received live: it takes positions below zero, the oldest lowest,
-- so paging back through a room reads it in order. `visibility_below` is
-- the room's history visibility just before the oldest event fetched so
-- far; events below it are not here yet.
ALTER TABLE rooms ADD COLUMN visibility_below TEXT;

-- The lowest position handed to fetched history; exactly one row. Readers
-- of the live stream never look below zero, so these positions need no
-- commit order.
CREATE TABLE backfill_position (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    position BIGINT NOT NULL
);
INSERT INTO backfill_position (position) VALUES (0);

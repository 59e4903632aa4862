-- Events of another server's room this server holds only as state or auth
-- chain (from a join): stored and citable, never part of the timeline, never
-- a forward extremity.
ALTER TABLE events ADD COLUMN outlier INTEGER NOT NULL DEFAULT 0;

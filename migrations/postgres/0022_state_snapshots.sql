-- The room's state at each event, so a graph with branches (events from
-- other servers cite their own prev_events) has a state at every point.
-- A snapshot is named by the event whose after-state it holds, or, for the
-- resolved state where branches meet, by a name the writer chooses. Most
-- snapshots hold a few rows on top of a base; a chain of bases is cut short
-- by a complete snapshot, so reading one walks a bounded number of rows.
CREATE TABLE state_snapshots (
    snapshot_id  TEXT PRIMARY KEY,
    room_id      TEXT NOT NULL,
    base_id      TEXT,
    chain_length BIGINT NOT NULL
);

CREATE TABLE state_snapshot_entries (
    snapshot_id TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, event_type, state_key)
);

-- The snapshots before and after each event. Events written before this
-- migration have none: their rooms were linear, and state by stream position
-- is exact for them.
ALTER TABLE events ADD COLUMN state_before TEXT;
ALTER TABLE events ADD COLUMN state_after TEXT;

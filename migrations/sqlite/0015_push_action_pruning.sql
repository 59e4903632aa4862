-- Push actions in stream order, for the sweep that removes old ones their
-- user has read.
CREATE INDEX event_push_actions_by_position ON event_push_actions (position);

-- When the user's clients were last seen syncing (ms since the epoch), noted
-- every few seconds while a sync runs: presence lapses to offline when both
-- this and last_active_ts are old.
ALTER TABLE presence ADD COLUMN last_sync_ts BIGINT NOT NULL DEFAULT 0;

-- The users whose presence can still lapse.
CREATE INDEX presence_not_offline ON presence (user_id) WHERE state <> 'offline';

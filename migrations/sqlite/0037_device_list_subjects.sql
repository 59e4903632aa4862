-- What each device-list change is about, so other servers can be told
-- exactly: one device (`device_id`), the user's cross-signing keys
-- (`signing_keys`), or, with neither, the whole list (as every change
-- written before this migration is read). Each user's changes other than
-- cross-signing keys form the chain `m.device_list_update` cites by
-- `prev_id`.
ALTER TABLE device_list_changes ADD COLUMN device_id TEXT;
ALTER TABLE device_list_changes ADD COLUMN signing_keys INTEGER NOT NULL DEFAULT 0;
CREATE INDEX device_list_changes_by_user ON device_list_changes (user_id, position);

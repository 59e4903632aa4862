-- How far each destination partition has told other servers of local
-- users' device-list changes (the device-list stream), so a change made
-- while no sender ran is still sent. Nothing before this migration is
-- sent again.
ALTER TABLE federation_cursors ADD COLUMN device_list_position INTEGER NOT NULL DEFAULT 0;
UPDATE federation_cursors SET device_list_position =
    (SELECT position FROM stream_counters WHERE stream = 'device_lists');

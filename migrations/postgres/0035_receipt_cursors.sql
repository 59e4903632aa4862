-- How far each destination partition has told other servers of local
-- users' read receipts (the receipts stream), so a receipt made while no
-- sender ran is still sent. Nothing before this migration is sent again.
ALTER TABLE federation_cursors ADD COLUMN receipt_position BIGINT NOT NULL DEFAULT 0;
UPDATE federation_cursors SET receipt_position =
    (SELECT position FROM stream_counters WHERE stream = 'receipts');
-- The senders read receipts of every room by position.
CREATE INDEX receipts_by_position ON receipts (position);

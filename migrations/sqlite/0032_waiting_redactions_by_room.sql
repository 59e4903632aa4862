-- The event writer asks, once per room it loads, whether any redaction
-- waits there: only then does each event arriving from another server
-- need looking up.
CREATE INDEX waiting_redactions_by_room ON waiting_redactions (room_id);

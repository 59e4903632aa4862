-- Redactions from other servers whose target this server did not hold yet
-- (fetched history arrives newest first): applied when the target reaches
-- the timeline. A row whose redaction never did is ignored.
CREATE TABLE waiting_redactions (
    target_event_id    TEXT NOT NULL,
    room_id            TEXT NOT NULL,
    redaction_event_id TEXT NOT NULL,
    PRIMARY KEY (target_event_id, redaction_event_id)
);

-- The answers given to other servers' transactions, for a day: a retry
-- (the sender never got the answer) is answered from here, and nothing
-- in it is applied twice. Unlogged, as the turns are: after a crash of
-- the database a retry is processed again, which the room's writer makes
-- safe for its PDUs.
CREATE UNLOGGED TABLE inbound_answers (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    answer      TEXT NOT NULL,
    answered_at BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX inbound_answers_by_age ON inbound_answers (origin, answered_at);

-- The answers given to other servers' transactions, for a day: a retry
-- (the sender never got the answer) is answered from here, and nothing
-- in it is applied twice.
CREATE TABLE inbound_answers (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    answer      TEXT NOT NULL,
    answered_at INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX inbound_answers_by_age ON inbound_answers (origin, answered_at);

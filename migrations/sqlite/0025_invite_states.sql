-- The stripped state another server sent with an invite of a local user to
-- a room this server does not hold: what the invitee's client is shown.
CREATE TABLE invite_states (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    stripped_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

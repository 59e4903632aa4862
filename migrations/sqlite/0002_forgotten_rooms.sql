-- Rooms a user has forgotten (`POST /rooms/{roomId}/forget`); joining again clears it.
CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

-- Rooms published in this server's room directory (`/publicRooms`).
CREATE TABLE room_directory (
    room_id      TEXT PRIMARY KEY,
    published_ts BIGINT NOT NULL
);

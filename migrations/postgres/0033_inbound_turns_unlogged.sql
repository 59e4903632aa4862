-- A turn lasts one transaction from another server and lapses by itself,
-- so it needs no durability: unlogged, taking and giving one back no
-- longer waits for the write-ahead log to reach the disk, twice on the
-- path of every inbound transaction. After a crash of the database the
-- table is empty, which only frees turns whose holders lost their
-- connections anyway. SQLite has no such tables and keeps its own.
ALTER TABLE inbound_turns SET UNLOGGED;

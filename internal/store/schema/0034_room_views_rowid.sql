-- SQLite: room_views becomes a table with rowids. WITHOUT ROWID kept each
-- view (a few KB) inside its primary key's B-tree, where a key is stored
-- in place only up to about 1 KB and compared in full: every lookup read
-- the whole overflow chain of each view it passed on its way down (about
-- 90 ms of the 1,000 lookups of a first initial sync). Now the key's index
-- holds only room ids, and a lookup reads its own row's pages.
CREATE TABLE room_views_new ( -- only: sqlite
    room_id  TEXT PRIMARY KEY, -- only: sqlite
    up_to    BIGINT NOT NULL, -- only: sqlite
    view     BLOB NOT NULL -- only: sqlite
); -- only: sqlite
INSERT INTO room_views_new (room_id, up_to, view) SELECT room_id, up_to, view FROM room_views; -- only: sqlite
DROP TABLE room_views; -- only: sqlite
ALTER TABLE room_views_new RENAME TO room_views; -- only: sqlite

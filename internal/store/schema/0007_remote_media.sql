-- Remote media cached by this server. A cached copy is a row of media
-- whose origin is the server that holds the original (empty for local
-- media) and whose media_id is "r.<hash of origin>.<remote media id>",
-- which no local id can be (local ids never contain a dot). fetched_ts is
-- when it was fetched; `luxchat media purge` deletes old copies.
ALTER TABLE media ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE media ADD COLUMN fetched_ts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX media_remote ON media (origin, fetched_ts);

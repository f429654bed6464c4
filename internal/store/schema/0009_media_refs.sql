-- Which events name which local media (mxc URIs in unencrypted content).
-- Media that was referenced and no longer is (every referencing event was
-- redacted) may be purged; media never seen referenced is kept, since
-- references inside encrypted events are invisible to the server.
CREATE TABLE media_refs (
    media_id    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (media_id, event_id)
);
CREATE INDEX media_refs_event ON media_refs (event_id);
ALTER TABLE media ADD COLUMN referenced BOOLEAN NOT NULL DEFAULT FALSE;

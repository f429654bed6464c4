-- The media repository. Blobs live in a BlobStore (files in data_dir/media
-- by default), sealed under a random per-file key; the rows here hold that
-- key wrapped by a master key that is never in the database.

-- One piece of local media. A row with uploaded_ts = 0 is a reservation
-- made by POST /_matrix/media/v1/create, usable until expires_ts.
CREATE TABLE media (
    media_id        TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    expires_ts      BIGINT NOT NULL DEFAULT 0,
    uploaded_ts     BIGINT NOT NULL DEFAULT 0,
    content_type    TEXT NOT NULL DEFAULT '',
    upload_name     TEXT NOT NULL DEFAULT '',
    size            BIGINT NOT NULL DEFAULT 0,
    blob            TEXT NOT NULL DEFAULT '',
    wrapped_key     TEXT NOT NULL DEFAULT '',
    key_id          TEXT NOT NULL DEFAULT '',
    -- Uploaded while the unauthenticated endpoints were open (not frozen).
    unauthenticated BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX media_user ON media (user_id, uploaded_ts);
CREATE INDEX media_key ON media (key_id);
CREATE INDEX media_blob ON media (blob);

-- A generated thumbnail, cached per size and method.
CREATE TABLE media_thumbnails (
    media_id        TEXT NOT NULL,
    width           INTEGER NOT NULL,
    height          INTEGER NOT NULL,
    method          TEXT NOT NULL,
    animated        BOOLEAN NOT NULL,
    content_type    TEXT NOT NULL,
    size            BIGINT NOT NULL,
    blob            TEXT NOT NULL,
    wrapped_key     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_key ON media_thumbnails (key_id);
CREATE INDEX media_thumbnails_blob ON media_thumbnails (blob);

-- Signing keys of other servers, fetched directly or through a notary.

-- One verify key. valid_until_ts is that of the response that listed it
-- in verify_keys; expired_ts is set (> 0) once it appears in
-- old_verify_keys and is then the end of its validity.
CREATE TABLE federation_keys (
    server_name     TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    public_key      TEXT NOT NULL,
    valid_until_ts  BIGINT NOT NULL DEFAULT 0,
    expired_ts      BIGINT NOT NULL DEFAULT 0,
    fetched_ts      BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

-- The newest self-signed /_matrix/key/v2/server response of each server,
-- kept verbatim so that our notary endpoint can serve it.
CREATE TABLE federation_key_responses (
    server_name     TEXT PRIMARY KEY,
    valid_until_ts  BIGINT NOT NULL,
    fetched_ts      BIGINT NOT NULL,
    response        TEXT NOT NULL
);

-- The Matrix OAuth 2.0 API, luxchat being the authorization server. Its
-- sessions are ordinary devices with ordinary access and refresh tokens;
-- these tables hold what comes before a session and what it was issued
-- to.

-- oauth_clients are the dynamically registered clients. metadata is the
-- registered metadata as registration answered it (JSON); clients that
-- register the same metadata share one client_id (metadata_hash).
CREATE TABLE oauth_clients (
    client_id      TEXT PRIMARY KEY,
    metadata_hash  TEXT NOT NULL UNIQUE,
    metadata       TEXT NOT NULL,
    created_ts     BIGINT NOT NULL
);

-- oauth_grants are authorization requests (kind 'code') and device
-- authorizations (kind 'device') in flight, keyed by the SHA-256 of the
-- request's key (in the pages' URLs) or of the device_code. status is
-- pending, approved (user_id set; for 'code' also code_hash, the
-- SHA-256 of the authorization code), denied, or used (kept until it
-- expires, so that a replayed code is recognised).
CREATE TABLE oauth_grants (
    grant_hash      TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    response_mode   TEXT NOT NULL,
    state           TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,
    scope           TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    user_code       TEXT,
    user_id         TEXT,
    status          TEXT NOT NULL,
    code_hash       TEXT,
    polled_ts       BIGINT NOT NULL,
    expires_ts      BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_grants_code ON oauth_grants (code_hash);
CREATE UNIQUE INDEX oauth_grants_user_code ON oauth_grants (user_code);
CREATE INDEX oauth_grants_expires ON oauth_grants (expires_ts);

-- oauth_browser_sessions are users logged in to this server's own pages
-- (authorization, device approval, account management), by a cookie
-- whose SHA-256 is session_hash.
CREATE TABLE oauth_browser_sessions (
    session_hash  TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    expires_ts    BIGINT NOT NULL
);
CREATE INDEX oauth_browser_sessions_expires ON oauth_browser_sessions (expires_ts);

-- oauth_sessions names the client and scope of a device logged in through
-- the OAuth 2.0 API (the account page shows them).
CREATE TABLE oauth_sessions (
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- A refresh token issued by the OAuth 2.0 token endpoint knows its client
-- (NULL: POST /refresh of the legacy API); each endpoint takes only its
-- own.
ALTER TABLE refresh_tokens ADD COLUMN client_id TEXT;

-- oauth_spent_refresh remembers OAuth refresh tokens once used (a day):
-- one presented again after its successor was used means the session
-- leaked, and the session is ended.
CREATE TABLE oauth_spent_refresh (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    spent_ts    BIGINT NOT NULL
);
CREATE INDEX oauth_spent_refresh_spent ON oauth_spent_refresh (spent_ts);

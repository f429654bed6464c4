-- Single sign-on through upstream OpenID Connect providers.

-- sso_links binds a provider's subject to a local user: the one thing a
-- login through the provider is matched on, so that a changed email or
-- name never makes a second account.
CREATE TABLE sso_links (
    provider_id  TEXT NOT NULL,
    subject      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (provider_id, subject)
);
CREATE INDEX sso_links_user ON sso_links (user_id);

-- sso_flows is one authorization request in flight, keyed by the hash of
-- its state: taken (deleted) once by the callback. browser_hash binds it
-- to the browser's cookie; nonce and code_verifier never leave here but
-- in the request to the provider.
CREATE TABLE sso_flows (
    state_hash     TEXT PRIMARY KEY,
    provider_id    TEXT NOT NULL,
    browser_hash   TEXT NOT NULL,
    nonce          TEXT NOT NULL,
    code_verifier  TEXT NOT NULL,
    kind           TEXT NOT NULL,
    redirect_url   TEXT NOT NULL,
    uia_session    TEXT NOT NULL,
    expires_ts     BIGINT NOT NULL
);
CREATE INDEX sso_flows_expires ON sso_flows (expires_ts);

-- login_tokens are the short-lived single-use m.login.token tokens,
-- hashed.
CREATE TABLE login_tokens (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    expires_ts  BIGINT NOT NULL
);
CREATE INDEX login_tokens_expires ON login_tokens (expires_ts);

-- user_threepids are third-party identifiers of accounts (the email a
-- provider vouched for).
CREATE TABLE user_threepids (
    medium        TEXT NOT NULL,
    address       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    validated_ts  BIGINT NOT NULL,
    added_ts      BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

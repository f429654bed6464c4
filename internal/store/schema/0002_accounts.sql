-- Refresh-token rotation (see store/accounts.go, RotateRefreshToken).
-- An access token knows the refresh token issued with it (refresh_hash) and,
-- until its first use, the refresh token it replaced (prev_refresh_hash).
-- A refresh token knows the one it replaced (prev_hash) and, once used, the
-- one issued in its place (next_hash). The spec keeps an old refresh token
-- valid until the new access or refresh token is used, so that a client that
-- lost the /refresh response can repeat it.
ALTER TABLE access_tokens ADD COLUMN refresh_hash TEXT;
ALTER TABLE access_tokens ADD COLUMN prev_refresh_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN prev_hash TEXT;
ALTER TABLE refresh_tokens ADD COLUMN next_hash TEXT;
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_hash);

-- Expired sessions and nonces are swept by age.
CREATE INDEX uia_sessions_created ON uia_sessions (created_ts);
CREATE INDEX admin_nonces_created ON admin_nonces (created_ts);

-- Account moderation and the admin API's user list (internal/httpapi/adminapi).
-- locked: the spec's account locking (every request 401 M_USER_LOCKED);
-- suspended: the spec's suspension (reads only); shadow_banned: sends
-- succeed for the user and reach no one; erased: deactivated with erase
-- (GDPR); user_type: NULL, 'bot' or 'support'; valid_until_ts: the
-- account locks from then on until an administrator renews it
-- (account_validity.period), NULL: never.
ALTER TABLE users ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN erased BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN user_type TEXT;
ALTER TABLE users ADD COLUMN valid_until_ts BIGINT;

-- The user list's orders: a page is read from an index holding the
-- columns of the default filters (deactivated, locked, admins), so that
-- the rows an offset skips are never read. NULL display names sort first
-- on both engines (SQLite's order; PostgreSQL is told).
CREATE INDEX users_list_id ON users (user_id, deactivated, locked, is_admin);
CREATE INDEX users_list_created ON users (created_ts, user_id, deactivated, locked, is_admin);
CREATE INDEX users_list_displayname ON users (displayname, user_id, deactivated, locked, is_admin); -- only: sqlite
CREATE INDEX users_list_displayname ON users (displayname NULLS FIRST, user_id, deactivated, locked, is_admin); -- only: postgres

-- GDPR erasure (internal/gdpr): the accounts erased, and the events
-- stream position when each was. The events a user sent up to up_to_pos
-- are served redacted to everyone who was not joined to the room when
-- they were sent (Synapse's rule); a later reactivation of the account
-- does not bring them back, since this row stays.
CREATE TABLE erased_users (
    user_id    TEXT PRIMARY KEY,
    up_to_pos  BIGINT NOT NULL,
    erased_ts  BIGINT NOT NULL
);

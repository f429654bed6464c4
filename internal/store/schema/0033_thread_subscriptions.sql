-- Thread subscriptions (MSC4306): one row per user and thread, kept when
-- the user unsubscribes (subscribed false), so that syncs tell clients of
-- the change and a late automatic subscription can be refused.
-- unsubscribed_at is the events position when the user last unsubscribed
-- (0: never): an automatic subscription whose cause event is at or before
-- it was already seen then and is refused. stream_pos is the last
-- change's position in the account data stream (what sliding sync's
-- extension, MSC4308, pages by).
CREATE TABLE thread_subscriptions (
    user_id          TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    root_id          TEXT NOT NULL,
    subscribed       BOOLEAN NOT NULL,
    automatic        BOOLEAN NOT NULL,
    unsubscribed_at  BIGINT NOT NULL,
    stream_pos       BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, root_id)
);
CREATE INDEX thread_subscriptions_changes ON thread_subscriptions (user_id, stream_pos);
CREATE INDEX thread_subscriptions_thread ON thread_subscriptions (room_id, root_id) WHERE subscribed;

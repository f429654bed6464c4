-- Delayed events (MSC4140), listed with MSC4486's filters: a user's
-- rows, scheduled or finalised, in the order of their send time; and the
-- application service whose as_token scheduled a row (NULL: the user's
-- own token), so that a service exempt from rate limits stays exempt
-- when its events fall due.
ALTER TABLE delayed_events ADD COLUMN app_service TEXT;
CREATE INDEX delayed_events_user_all ON delayed_events (user_id, due_ms, seq);

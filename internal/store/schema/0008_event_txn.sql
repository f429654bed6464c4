-- Client transaction ids live on the event row itself: one statement less
-- per send. txn_ids keeps the rows written before this migration.
ALTER TABLE events ADD COLUMN txn_key TEXT;
CREATE UNIQUE INDEX events_txn ON events (sender, txn_device, txn_key) WHERE txn_key IS NOT NULL;

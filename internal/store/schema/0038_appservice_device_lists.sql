-- How far each application service has heard of device list changes
-- (MSC3202), kept with its other positions so that a restart neither
-- loses the changes made while it was down nor repeats them. -1: not
-- known yet (a service from before this column), started at the stream's
-- current position.
ALTER TABLE appservice_positions ADD COLUMN acked_device_lists BIGINT NOT NULL DEFAULT -1;
ALTER TABLE appservice_txns ADD COLUMN upto_device_lists BIGINT NOT NULL DEFAULT -1;

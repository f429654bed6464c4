-- The entries stored along a state group's delta chain, its snapshot's
-- excluded: a chain is cut by a snapshot when they would outgrow the state
-- (see store/state.go). Groups of before count as none: their chains are
-- at most 32 groups long.
ALTER TABLE state_groups ADD COLUMN chain_rows INTEGER NOT NULL DEFAULT 0;

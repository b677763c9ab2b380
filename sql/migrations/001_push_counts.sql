-- Push mode counts in the run ledger (issue 3).
-- rows_in = rows_delivered + rows_dead_lettered + rows_not_selected + rows_quarantined in push mode.
ALTER TABLE scoring_runs ADD COLUMN rows_not_selected BIGINT;
ALTER TABLE scoring_runs ADD COLUMN rows_delivered BIGINT;
ALTER TABLE scoring_runs ADD COLUMN rows_failed BIGINT;
ALTER TABLE scoring_runs ADD COLUMN rows_dead_lettered BIGINT;
ALTER TABLE scoring_runs ADD COLUMN sink TEXT;

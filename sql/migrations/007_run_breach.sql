-- Drift and quality with a visible state (issue 24).
-- scoring_runs.breach: the breaches a published partition carries under the job's `flag` policy,
-- comma-joined ("drift", "quarantine", "drift,quarantine"); NULL when it carries none.
ALTER TABLE scoring_runs ADD COLUMN breach TEXT;
-- scoring_drift.p_value: chi-square test of the partition's bin counts against the training shares
-- (bins expected to hold fewer than 5 rows pooled); NULL where not tested. scoring_drift.drifted now
-- means a breach: PSI above the threshold AND p_value below drift.alpha AND row_count >= drift.min_rows.
ALTER TABLE scoring_drift ADD COLUMN p_value DOUBLE PRECISION;

-- Rejected input rows: original values (JSON), the reasons, and the run that rejected them.
-- A re-run of a partition replaces that partition's rows, like the predictions.
CREATE TABLE IF NOT EXISTS scoring_quarantine (
    job_id          TEXT NOT NULL,
    partition_date  DATE NOT NULL,
    run_id          TEXT NOT NULL,
    entity_key      TEXT,
    reasons         TEXT NOT NULL,
    row_values      {json} NOT NULL,
    quarantined_at  {ts} NOT NULL
);
CREATE INDEX IF NOT EXISTS scoring_quarantine_partition ON scoring_quarantine (job_id, partition_date);

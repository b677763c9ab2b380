-- Drift of a partition against the model's training statistics: one row per feature (and
-- one for the score, one for the predicted classes) per run. Replaced with the partition.
CREATE TABLE IF NOT EXISTS scoring_drift (
    job_id          TEXT NOT NULL,
    partition_date  DATE NOT NULL,
    run_id          TEXT NOT NULL,
    model_name      TEXT NOT NULL,
    model_version   INTEGER NOT NULL,
    feature         TEXT NOT NULL,          -- an input column, '__score__' or '__prediction__'
    kind            TEXT NOT NULL,          -- numeric | categorical | score | prediction
    statistic       TEXT NOT NULL,          -- psi
    value           DOUBLE PRECISION NOT NULL,
    threshold       DOUBLE PRECISION NOT NULL,
    drifted         BOOLEAN NOT NULL,
    row_count       BIGINT NOT NULL,
    computed_at     {ts} NOT NULL
);
CREATE INDEX IF NOT EXISTS scoring_drift_partition ON scoring_drift (job_id, partition_date);

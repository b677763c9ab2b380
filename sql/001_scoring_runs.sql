-- The run ledger: one row per run attempt of a job on a partition.
-- rows_in = rows_scored + rows_quarantined is checked by the finalize task.
CREATE TABLE IF NOT EXISTS scoring_runs (
    job_id            TEXT NOT NULL,
    run_id            TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    partition_date    DATE NOT NULL,
    mode              TEXT NOT NULL,
    dry_run           BOOLEAN NOT NULL,
    model_name        TEXT,
    model_version     INTEGER,
    status            TEXT NOT NULL,          -- running | success | failed | abandoned
    failed_stage      TEXT,
    rows_in           BIGINT,
    rows_valid        BIGINT,
    rows_quarantined  BIGINT,
    rows_scored       BIGINT,
    rows_written      BIGINT,
    started_at        {ts} NOT NULL,
    finished_at       {ts},
    duration_s        DOUBLE PRECISION,
    stage_seconds     {json},                 -- JSON: {"ingest": 1.2, ...}
    error             TEXT,
    PRIMARY KEY (job_id, run_id, attempt)
);
CREATE INDEX IF NOT EXISTS scoring_runs_partition ON scoring_runs (job_id, partition_date);

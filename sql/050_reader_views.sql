-- What the analysts' read-only role may see of the operational tables, as views in the analysts'
-- schema (a view reads with its owner's rights: the role needs none on the tables). Only the jobs
-- that publish into this schema ({jobs}: one row per job, kept by store.ensure_predictions), and
-- no raw values, error texts, hosts or paths. The operational tables are named unqualified: the
-- views bind to those of the pipeline's connection (its search path) when they are made.
-- {jobs}: the jobs publishing here (job, predictions table, entity key and its type).
CREATE TABLE IF NOT EXISTS {jobs} (
    job_id       TEXT PRIMARY KEY,
    table_name   TEXT NOT NULL,
    entity_key   TEXT NOT NULL,
    key_type     TEXT NOT NULL,          -- BIGINT or TEXT
    updated_at   {ts} NOT NULL
);
-- {attempts}: the run ledger without its error texts, hosts and timings: one row per attempt of a
-- job on a partition; live marks the attempt whose rows are the partition's published copy.
DROP VIEW IF EXISTS {attempts};
CREATE VIEW {attempts} AS
SELECT job_id, partition_date, run_id, attempt, status, failed_stage, mode, dry_run, model_name, model_version,
       rows_in, rows_valid, rows_quarantined, rows_scored, rows_written, started_at, finished_at,
       published_at, live, breach, warnings
FROM scoring_runs
WHERE job_id IN (SELECT job_id FROM {jobs});
-- {drift_daily}: drift of every published partition against the model's training statistics, one row
-- per feature (and the score, the predicted classes), with the sample size and the test of significance.
DROP VIEW IF EXISTS {drift_daily};
CREATE VIEW {drift_daily} AS
SELECT job_id, partition_date, model_name, model_version, feature, kind, statistic, value, threshold, drifted,
       row_count, p_value, run_id, computed_at, source
FROM scoring_drift
WHERE job_id IN (SELECT job_id FROM {jobs});
-- {promotion_audit}: the model audit (pipeline.promotion, sql/migrations/013) of the models the jobs publishing
-- here score, and of the gates that read those jobs' comparisons: every promotion, rollback and refused promotion,
-- who asked, when, why and the verdict's figures. The audit lives in the registry database: this view shows it
-- where that is the jobs' database too (the default: scoring_db for both).
DROP VIEW IF EXISTS {promotion_audit};
CREATE VIEW {promotion_audit} AS
SELECT id, model_name, alias, event, gate, from_version, to_version, requested_by, at, reason, decision, job_id,
       figures, source, run_id
FROM scoring_model_audit
WHERE job_id IN (SELECT job_id FROM {jobs})
   OR model_name IN (SELECT model_name FROM scoring_runs WHERE job_id IN (SELECT job_id FROM {jobs})
                     AND model_name IS NOT NULL);

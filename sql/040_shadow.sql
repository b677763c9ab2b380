-- With model.challengers (pipeline/shadow.py): the challengers' predictions, never the champion's
-- table or the sink. One row per entity, partition and challenger version; a run replaces the
-- partition's rows of every challenger at once.
CREATE TABLE IF NOT EXISTS {shadow} (
    partition_date  DATE NOT NULL,
    {key}           {key_type} NOT NULL,
    model_name      TEXT NOT NULL,
    model_version   INTEGER NOT NULL,
    prediction      TEXT NOT NULL,
    score           DOUBLE PRECISION,
    run_id          TEXT NOT NULL,
    scored_at       {ts} NOT NULL,
    PRIMARY KEY (partition_date, model_version, {key})
);
-- {compare}: the job's daily champion/challenger comparisons, for analysts (without error texts).
DROP VIEW IF EXISTS {compare};
CREATE VIEW {compare} AS
SELECT partition_date, challenger_ref, model_name, champion_version, challenger_version, status, rows_compared,
       agreement, mean_abs_diff, max_abs_diff, spearman, top_n, top_n_overlap, psi, run_id, computed_at
FROM {comparisons}
WHERE job_id = {job};

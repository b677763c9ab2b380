-- Champion/challenger comparisons (pipeline/shadow.py): one row per job, partition and challenger
-- (a version or alias of model.challengers), replaced with the partition by each successful run.
CREATE TABLE IF NOT EXISTS scoring_shadow_comparisons (
    job_id              TEXT NOT NULL,
    partition_date      DATE NOT NULL,
    challenger_ref      TEXT NOT NULL,          -- as the job file names it: '3' or an alias
    run_id              TEXT NOT NULL,
    model_name          TEXT NOT NULL,
    champion_version    INTEGER NOT NULL,
    challenger_version  INTEGER,                -- NULL when the ref did not resolve
    status              TEXT NOT NULL,          -- compared | failed
    error               TEXT,
    rows_compared       BIGINT,
    agreement           DOUBLE PRECISION,
    mean_abs_diff       DOUBLE PRECISION,
    max_abs_diff        DOUBLE PRECISION,
    spearman            DOUBLE PRECISION,
    top_n               INTEGER,
    top_n_overlap       DOUBLE PRECISION,
    psi                 DOUBLE PRECISION,
    computed_at         {ts} NOT NULL,
    PRIMARY KEY (job_id, partition_date, challenger_ref)
);

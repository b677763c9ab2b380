-- DRAFT (owned by the verdicts helper, issue 28): realised performance per arm and the verdict.
CREATE TABLE IF NOT EXISTS scoring_ab_results (
    job_id              TEXT NOT NULL,
    partition_date      DATE NOT NULL,
    scope               TEXT NOT NULL,
    arm                 TEXT NOT NULL,
    model_version       INTEGER NOT NULL,
    computed_at         {ts} NOT NULL,
    PRIMARY KEY (job_id, partition_date, scope, arm, model_version)
);

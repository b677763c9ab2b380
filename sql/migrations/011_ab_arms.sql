-- A/B by rule (issue 28): the rows of an attempt per arm, as JSON {"period": N, "salt": ..., "arms":
-- {"champion": {"version", "rows"}, arm: {"version", "rows", "fallback", "error"}}} (NULL for a job without
-- model.split, and for dry runs); and the assignment periods of each job's split: a new one whenever the split,
-- its salt or a version behind it changes, opened by the first run that publishes under it (pipeline.ab,
-- insert-if-absent on the primary key: runs finishing together open it once).
ALTER TABLE scoring_runs ADD COLUMN arms {json};
CREATE TABLE IF NOT EXISTS scoring_ab_periods (
    job_id            TEXT NOT NULL,
    period            INTEGER NOT NULL,       -- 1, 2, ... per job
    model_name        TEXT NOT NULL,
    champion_version  INTEGER NOT NULL,
    salt              TEXT NOT NULL,          -- model.split_salt, else the job id
    arms              {json} NOT NULL,        -- [{"name", "version", "basis_points", "first_bucket", "end_bucket"}]
    fingerprint       TEXT NOT NULL,          -- sha256 of the champion version, the salt and the arms
    change            TEXT NOT NULL,          -- what changed from the period before, in words
    first_partition   DATE NOT NULL,          -- the partition of the run that started it
    run_id            TEXT NOT NULL,
    started_at        {ts} NOT NULL,
    PRIMARY KEY (job_id, period)
);

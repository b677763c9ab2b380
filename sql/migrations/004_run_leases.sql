-- Truthful attempts (issue 13): who is working on an attempt and when it was last seen, and
-- which attempt's rows are the partition's published copy.
-- holder: "process|task:<host>:<pid>:<process start>" of the process that last worked on the
-- attempt (process: `scoring run`, the whole attempt in one process; task: one Airflow task).
ALTER TABLE scoring_runs ADD COLUMN holder TEXT;
-- heartbeat_at: refreshed while a step of the attempt runs; an attempt still 'running' whose
-- holder is gone, or not seen for SCORING_LEASE_SECONDS, is marked 'abandoned' by the next one.
ALTER TABLE scoring_runs ADD COLUMN heartbeat_at {ts};
-- published_at: when this attempt's rows became the partition's copy (persist mode);
-- live: true for the one attempt of a (job, partition) whose rows are the published copy now.
ALTER TABLE scoring_runs ADD COLUMN published_at {ts};
ALTER TABLE scoring_runs ADD COLUMN live BOOLEAN;

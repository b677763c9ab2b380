-- The online door (issue 27): scoring_drift holds the drift of the online traffic of a day beside the batch
-- run's drift of that partition. source says which: 'batch' (a run of the job, every row written before this
-- migration) or 'online' (`scoring online drift`, run_id 'online:<day>'). A batch run replaces its partition's
-- batch rows only, and an online computation its day's online rows only.
ALTER TABLE scoring_drift ADD COLUMN source TEXT NOT NULL DEFAULT 'batch';

-- The promotion gate (issue 28, pipeline/promotion.py): every promotion and rollback of a model's alias, and every
-- promotion the gate refused, with who, when, why and the figures it was decided on. In the registry database
-- (the one holding scoring_model_registrations). Rows are only ever added.
CREATE TABLE IF NOT EXISTS scoring_model_audit (
    id             TEXT PRIMARY KEY,      -- uuid4 hex
    model_name     TEXT NOT NULL,
    alias          TEXT NOT NULL,         -- the alias moved (or that the gate refused to move): champion by default
    event          TEXT NOT NULL,         -- promote | rollback | refused
    gate           TEXT NOT NULL,         -- if_better (the realised comparison was checked) | none (a person's override)
    from_version   INTEGER,               -- where the alias pointed before (NULL: nowhere)
    to_version     INTEGER,               -- where it points now; refused: the version that asked to be promoted
    requested_by   TEXT NOT NULL,         -- login name (cli) or the Airflow user who triggered the run (dag)
    at             {ts} NOT NULL,
    reason         TEXT,                  -- why, in the requester's words
    decision       TEXT NOT NULL,         -- what the gate (or the override) said, in words
    job_id         TEXT,                  -- the job whose comparison was read (NULL: no gate)
    figures        {json},                -- the verdict row read (scoring_ab_results), NULL when there was none
    source         TEXT NOT NULL,         -- cli | dag
    run_id         TEXT                   -- the Airflow run id (dag), else NULL
);
CREATE INDEX IF NOT EXISTS scoring_model_audit_model ON scoring_model_audit (model_name, at);

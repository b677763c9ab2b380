-- One predictions table per job; {predictions} is a validated lower-case identifier, {key} the
-- job's entity key column (any name check_column_name accepts, always quoted by the store).
-- One row per entity per partition, with the model version and run behind it. {primary_key}:
-- on PostgreSQL the key leads (each day partition holds one date, so it serves one entity's
-- history and one day's rows alike; tables made before issue 15 lead with the date and have
-- the index of sql/015 besides); on SQLite the date leads (a re-run deletes its day) and
-- sql/015's index serves an entity's history.
-- {partitioned}: PostgreSQL partitions the table by day (LIST on partition_date): a run loads its
-- rows into a table of their own, indexes it and swaps it in (store._swap_partition). SQLite: empty.
CREATE TABLE IF NOT EXISTS {predictions} (
    partition_date  DATE NOT NULL,
    {key}           {key_type} NOT NULL,
    prediction      TEXT NOT NULL,
    score           DOUBLE PRECISION,
    model_name      TEXT NOT NULL,
    model_version   INTEGER NOT NULL,
    run_id          TEXT NOT NULL,
    scored_at       {ts} NOT NULL,
    flags           TEXT,                   -- reasons of 'flag' checks (e.g. unknown_category:plan), else NULL
    route           TEXT,                   -- cascade: the router's prediction that chose the model, else NULL
    router_model    TEXT,                   -- cascade: the router model, else NULL
    router_version  INTEGER,                -- cascade: its version, else NULL
    arm             TEXT,                   -- model.split: the row's arm (champion or an arm's name), else NULL
    PRIMARY KEY ({primary_key})
){partitioned};

-- Lock patience (pipeline.store.locks).

-- name: ddl_lock
-- one schema change at a time (concurrent CREATE ... IF NOT EXISTS can collide)
SELECT pg_advisory_xact_lock(hashtext('scoring_pipeline_ddl'));

-- name: ddl_lock_sqlite
-- SQLite: the database's one write lock, taken when the transaction begins (pysqlite has begun nothing yet),
-- so what the schema change reads (a table there or not) is still true when it writes
BEGIN IMMEDIATE;

-- name: swap_outcome
-- what sql/060_swap_take.sql left in the transaction's settings
SELECT current_setting('scoring.swap_locked'), current_setting('scoring.swap_tries');

-- Small statements the store's modules share (pipeline/store/). Named statements (-- name: <name>),
-- read by pipeline.store.sqlfiles: {placeholders} are validated, quoted identifiers; values are bound
-- (:name through SQLAlchemy, $1 through ADBC), never written into the text.

-- name: current_schema
SELECT current_schema();

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema};

-- name: drop_view
DROP VIEW IF EXISTS {view};

-- name: drop_table
DROP TABLE IF EXISTS {table};

-- name: grant_select
GRANT SELECT ON {view} TO {role};

-- name: add_column
ALTER TABLE {table} ADD COLUMN {column} {type};

-- name: count_rows
SELECT COUNT(*) FROM {table};

-- name: lock_timeout
-- this transaction's lock waits (SET LOCAL, with the time bound): :timeout, e.g. '300ms'
SELECT set_config('lock_timeout', :timeout, true);

-- name: lock_timeout_adbc
SELECT set_config('lock_timeout', $1, true);

-- name: record_migration
INSERT INTO scoring_schema_migrations (name, applied_at) VALUES (:n, :t);

-- name: migration_recorded
SELECT 1 FROM scoring_schema_migrations WHERE name = :n;

-- Column types of tables made before issue 12 (pipeline.store.operational.upgrade_types): timestamp
-- without time zone (UTC by convention) -> timestamptz, JSON text -> jsonb. The ALTER COLUMN pieces
-- are joined into one ALTER TABLE, so the table is rewritten once whatever the number of columns.

-- name: column_types
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = COALESCE(:s, current_schema()) AND table_name = :t;

-- name: to_timestamptz
ALTER COLUMN {column} TYPE timestamptz USING {column} AT TIME ZONE 'UTC'

-- name: to_jsonb
ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb

-- name: alter_table
ALTER TABLE {table} {changes};

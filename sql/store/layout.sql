-- PostgreSQL layout migrations of a predictions table (pipeline.store.layout).

-- name: relation_kind
SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = COALESCE(:s, current_schema()) AND c.relname = :t;

-- name: tables_with_days_beside
-- the partitioned tables of schema :h with the pipeline's first :n columns whose day partitions are in :h too
SELECT DISTINCT p.relname FROM pg_class p JOIN pg_inherits i ON i.inhparent = p.oid
JOIN pg_class c ON c.oid = i.inhrelid AND c.relnamespace = p.relnamespace
WHERE p.relkind = 'p' AND p.relnamespace = CAST(:h AS regnamespace)
AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = p.oid AND NOT a.attisdropped AND a.attname = ANY(:cols)) = :n;

-- name: days_and_loads_beside
-- the day partitions of :p in schema :h, and the load tables of table :t there (their mark: :mark, then JSON)
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = CAST(:p AS regclass) AND c.relnamespace = CAST(:h AS regnamespace)
UNION ALL
SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(:h AS regnamespace)
AND c.relkind = 'r' AND NOT c.relispartition
AND CASE WHEN starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), :mark)
THEN CAST(substr(obj_description(c.oid, 'pg_class'), :at) AS json) ->> 'table' = :t ELSE false END;

-- name: set_schema
ALTER TABLE {table} SET SCHEMA {schema};

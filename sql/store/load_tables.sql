-- Load tables left behind (pipeline.store.load_tables): found by their COMMENT (a mark, then JSON).

-- name: loads_in_schema
SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n
ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'
AND starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), $2);

-- name: loads_anywhere
SELECT n.nspname, c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND NOT c.relispartition
AND starts_with(COALESCE(obj_description(c.oid, 'pg_class'), ''), :mark);

-- name: attempt_status
SELECT status FROM scoring_runs WHERE job_id = :j AND run_id = :r AND attempt = :a;

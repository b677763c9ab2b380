-- What analysts read (pipeline.store.analyst): the jobs publishing into a schema, counts, the daily summary.

-- name: job_row
SELECT table_name, entity_key, key_type FROM {jobs} WHERE job_id = :j;

-- name: insert_job
INSERT INTO {jobs} (job_id, table_name, entity_key, key_type, updated_at) VALUES (:j, :t, :k, :kt, :u);

-- name: update_job
UPDATE {jobs} SET table_name = :t, entity_key = :k, key_type = :kt, updated_at = :u WHERE job_id = :j;

-- name: count_partition
SELECT COUNT(*) FROM {predictions} WHERE partition_date = :d;

-- name: daily_summary
SELECT * FROM {daily} WHERE partition_date = :d;

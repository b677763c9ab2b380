-- Partition writes (pipeline.store.writes): SQLite's delete-and-insert in one transaction, the quarantine,
-- the shadow table's delete on PostgreSQL. {columns} and {marks}: the quoted columns and their "?".

-- name: delete_day
DELETE FROM {table} WHERE partition_date = :d;

-- name: delete_day_adbc
DELETE FROM {table} WHERE partition_date = $1;

-- name: insert_rows
INSERT INTO {table} ({columns}) VALUES ({marks});

-- name: delete_quarantine
DELETE FROM scoring_quarantine WHERE job_id = :j AND partition_date = :d;

-- name: insert_quarantine
INSERT INTO scoring_quarantine (job_id, partition_date, run_id, entity_key, entity_key_int, reasons, row_values,
                                quarantined_at)
VALUES (:job_id, :partition_date, :run_id, :entity_key, :entity_key_int, :reasons, :row_values, :quarantined_at);

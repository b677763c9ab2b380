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

-- name: delete_drift
-- a partition's drift rows of one source (batch: a run's; online: scoring online drift's), replaced by a new
-- computation; the other source's rows of the day stay
DELETE FROM scoring_drift WHERE job_id = :job_id AND partition_date = :day AND source = :source;

-- name: insert_drift
INSERT INTO scoring_drift (job_id, partition_date, run_id, model_name, model_version, feature, kind, statistic,
                           value, threshold, drifted, row_count, p_value, computed_at, source)
VALUES (:job_id, :partition_date, :run_id, :model_name, :model_version, :feature, :kind, :statistic, :value,
        :threshold, :drifted, :row_count, :p_value, :computed_at, :source);

-- name: newest_ab_period
-- a job's newest A/B assignment period (pipeline.ab.record_period)
SELECT * FROM scoring_ab_periods WHERE job_id = :job_id ORDER BY period DESC LIMIT 1;

-- name: insert_ab_period
-- a new assignment period, unless a run finishing at the same time inserted this period number first
INSERT INTO scoring_ab_periods (job_id, period, model_name, champion_version, salt, arms, fingerprint, change,
                                first_partition, run_id, started_at)
VALUES (:job_id, :period, :model_name, :champion_version, :salt, :arms, :fingerprint, :change, :first_partition,
        :run_id, :started_at)
ON CONFLICT (job_id, period) DO NOTHING;

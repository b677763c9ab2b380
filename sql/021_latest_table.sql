-- {current}: the latest prediction of every entity of one predictions table ({predictions}), the
-- rows the {table}_latest view serves. Same columns as the predictions table, one row per entity
-- ({current_key}: unique on the key), an index by day ({current_day}) for the newest partition and
-- for a publish's fallback. Kept by every publish in the transaction of its swap
-- (sql/023_latest_publish.sql); on PostgreSQL it lives with the day partitions, out of the
-- analysts' schema. Made from the table's rows when it is first created (sql/022_latest_fill.sql).
CREATE TABLE IF NOT EXISTS {current} AS SELECT * FROM {predictions} WHERE 1 = 0;
CREATE UNIQUE INDEX IF NOT EXISTS {current_key} ON {current} ({key});
CREATE INDEX IF NOT EXISTS {current_day} ON {current} (partition_date);

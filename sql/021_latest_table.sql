-- {current}: the latest prediction of every entity of one predictions table ({predictions}), the
-- rows the {table}_latest view serves. Same columns as the predictions table, one row per entity
-- ({current_key}: unique on the key, the only index). Kept by every publish in the transaction of
-- its swap (sql/023_latest_publish.sql); on PostgreSQL it lives with the day partitions, out of the
-- analysts' schema. Made from the table's rows when it is first created (sql/022_latest_fill.sql).
-- {fillfactor} (PostgreSQL: pages half full): a publish rewrites its entities' rows in place (HOT
-- updates, no index entry to write: the key never changes and no other column is indexed).
-- {newest}: the newest partition of each predictions table of the schema (the day of the newest
-- row of {current}), set by the same publish: _latest reads it instead of scanning {current}.
CREATE TABLE IF NOT EXISTS {current}{fillfactor} AS SELECT * FROM {predictions} WHERE 1 = 0;
CREATE UNIQUE INDEX IF NOT EXISTS {current_key} ON {current} ({key});
CREATE TABLE IF NOT EXISTS {newest} (
    table_name        TEXT PRIMARY KEY,
    latest_partition  DATE
);

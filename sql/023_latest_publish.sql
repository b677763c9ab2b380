-- A publish of day {day} keeps {current} (the latest row of every entity) in step, in the same
-- transaction as the swap: a failed publish leaves it as it was, a re-run replaces.
-- {new}: the day's new rows (PostgreSQL: the load table about to be swapped in; SQLite: the
-- predictions table, whose day was just replaced); {predictions}: the table, whose days before
-- {day} are the history. {cur}: {current}'s own name, for its columns. {columns}: every column.
-- {newest}: the newest day of each table ({table}: this one's name, a literal).
-- 1. Entities whose latest row was the replaced copy of {day}, absent from the new copy and from
--    every earlier day: they have no prediction any more.
DELETE FROM {current}
WHERE partition_date = {day}
  AND NOT EXISTS (SELECT 1 FROM {new} n WHERE n.partition_date = {day} AND n.{key} = {cur}.{key})
  AND NOT EXISTS (SELECT 1 FROM {predictions} o WHERE o.partition_date < {day} AND o.{key} = {cur}.{key});
-- 2. The same with an earlier day: back to their latest earlier row.
UPDATE {current}
SET ({columns}) = (SELECT {o_columns} FROM {predictions} o
                   WHERE o.{key} = {cur}.{key} AND o.partition_date < {day}
                   ORDER BY o.partition_date DESC LIMIT 1)
WHERE partition_date = {day}
  AND NOT EXISTS (SELECT 1 FROM {new} n WHERE n.partition_date = {day} AND n.{key} = {cur}.{key});
-- 3. The new copy's rows, unless the entity's current row is of a later day (a backfill of an old day).
INSERT INTO {current} ({columns})
SELECT {n_columns} FROM {new} n WHERE n.partition_date = {day}
ON CONFLICT ({key}) DO UPDATE SET {updates}
WHERE {cur}.partition_date <= excluded.partition_date;
-- 4. The table's newest day, as _latest reads it (a scan of {current}, once a publish).
DELETE FROM {newest} WHERE table_name = {table};
INSERT INTO {newest} (table_name, latest_partition) SELECT {table}, MAX(partition_date) FROM {current};

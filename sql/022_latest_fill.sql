-- {current} made from the history of {predictions}: the latest row of every entity, and its newest
-- day in {newest}. Run once, in the transaction that creates {current} (a database made before it,
-- or a table migrated).
INSERT INTO {current} ({columns})
SELECT {p_columns}
FROM {predictions} p
JOIN (SELECT {key} AS k, MAX(partition_date) AS d FROM {predictions} GROUP BY {key}) m
  ON p.{key} = m.k AND p.partition_date = m.d;
DELETE FROM {newest} WHERE table_name = {table};
INSERT INTO {newest} (table_name, latest_partition) SELECT {table}, MAX(partition_date) FROM {current};

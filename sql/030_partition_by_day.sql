-- Migration of one predictions table made before issue 13 (a plain table) into one partitioned
-- by day, as 010_predictions.sql now creates them on PostgreSQL. Applied by store.ensure_predictions
-- to each such table at the first run that finds it, in one transaction (readers keep the old
-- table until it commits), and recorded in scoring_schema_migrations as
-- "030_partition_by_day.sql:<schema>.<table>". The analyst views, which depend on the old table,
-- are dropped before and made anew after it; the index by key is made anew by 015.
-- {predictions}: the table (qualified); {legacy}: its new name while the rows move (unqualified),
-- {legacy_q} the same qualified; {schema}: the schema as a literal; {prefix}: the partitions' name
-- prefix as a literal (store.partition_prefix); {key}: the entity key column.
ALTER TABLE {predictions} RENAME TO {legacy};
ALTER INDEX IF EXISTS {old_by_key} RENAME TO {legacy_by_key};
CREATE TABLE {predictions} (LIKE {legacy_q} INCLUDING DEFAULTS) PARTITION BY LIST (partition_date);
ALTER TABLE {predictions} ADD PRIMARY KEY (partition_date, {key});
-- one partition per day the table holds, named as the pipeline names them (<prefix>_<yyyymmdd>)
DO $$
DECLARE d date;
BEGIN
  FOR d IN SELECT DISTINCT partition_date FROM {legacy_q} ORDER BY 1 LOOP
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES IN (%L)',
                   {schema}, {prefix} || '_' || to_char(d, 'YYYYMMDD'), '{predictions}', d);
  END LOOP;
END
$$;
INSERT INTO {predictions} SELECT * FROM {legacy_q};
DROP TABLE {legacy_q};

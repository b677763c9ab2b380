-- Views for analysts over one predictions table ({key}: the quoted entity key column).
-- {latest}: the most recent prediction of every entity, with the day it was scored for
-- (partition_date), the table's newest partition (latest_partition) and whether this entity's
-- score is older than that (is_stale: the entity was not in the newest partition). It reads
-- {current} (sql/021_latest_table.sql), one row per entity kept by every publish, and the newest
-- partition from {newest}, so its cost is that of the entities, not of the history.
DROP VIEW IF EXISTS {latest};
CREATE VIEW {latest} AS
SELECT c.*,
       t.latest_partition,
       (c.partition_date < t.latest_partition) AS is_stale
FROM {current} c
LEFT JOIN (SELECT latest_partition FROM {newest} WHERE table_name = {table}) t ON 1 = 1;
-- {daily}: one row per partition and model version.
DROP VIEW IF EXISTS {daily};
CREATE VIEW {daily} AS
SELECT partition_date,
       model_name,
       model_version,
       COUNT(*)                                              AS rows_scored,
       AVG(score)                                            AS mean_score,
       AVG(CASE WHEN prediction = '1' THEN 1.0 ELSE 0.0 END) AS positive_share,
       MAX(scored_at)                                        AS scored_at
FROM {predictions}
GROUP BY partition_date, model_name, model_version;

-- Views for analysts over one predictions table ({key}: the quoted entity key column).
-- {latest}: the most recent prediction of every entity, with the day it was scored for
-- (partition_date), the table's newest partition (latest_partition) and whether this entity's
-- score is older than that (is_stale: the entity was not in the newest partition).
DROP VIEW IF EXISTS {latest};
CREATE VIEW {latest} AS
SELECT p.*,
       t.latest_partition,
       (p.partition_date < t.latest_partition) AS is_stale
FROM {predictions} p
JOIN (SELECT {key} AS k, MAX(partition_date) AS d FROM {predictions} GROUP BY {key}) m
  ON p.{key} = m.k AND p.partition_date = m.d
CROSS JOIN (SELECT MAX(partition_date) AS latest_partition FROM {predictions}) t;
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

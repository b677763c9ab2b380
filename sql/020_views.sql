-- Views for analysts over one predictions table ({key}: the quoted entity key column).
-- {latest}: the most recent prediction of every entity.
DROP VIEW IF EXISTS {latest};
CREATE VIEW {latest} AS
SELECT p.*
FROM {predictions} p
JOIN (SELECT {key} AS k, MAX(partition_date) AS d FROM {predictions} GROUP BY {key}) m
  ON p.{key} = m.k AND p.partition_date = m.d;
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

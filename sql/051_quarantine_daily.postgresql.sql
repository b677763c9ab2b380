-- {quarantine_daily}: quarantined rows per job, partition and reason code (a row with two reasons
-- counts under each), no entity keys or values. PostgreSQL splits the reasons with unnest, so a
-- filter on job_id and partition_date reaches the quarantine's index (SQLite: 051_...sqlite.sql).
-- chr(59) is the semicolon: the store splits its SQL files on semicolons.
DROP VIEW IF EXISTS {quarantine_daily};
CREATE VIEW {quarantine_daily} AS
SELECT q.job_id, q.partition_date, r.reason, COUNT(*) AS row_count
FROM scoring_quarantine q
CROSS JOIN LATERAL unnest(string_to_array(q.reasons, chr(59) || ' ')) AS r(reason)
WHERE q.job_id IN (SELECT job_id FROM {jobs})
GROUP BY q.job_id, q.partition_date, r.reason;

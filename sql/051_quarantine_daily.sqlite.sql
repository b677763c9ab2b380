-- {quarantine_daily}: quarantined rows per job, partition and reason code (a row with two reasons
-- counts under each), no entity keys or values. SQLite splits the "; "-joined reasons with a
-- recursive query (PostgreSQL: 051_...postgresql.sql).
-- char(59) is the semicolon: the store splits its SQL files on semicolons.
DROP VIEW IF EXISTS {quarantine_daily};
CREATE VIEW {quarantine_daily} AS
WITH RECURSIVE codes (job_id, partition_date, reason, rest) AS (
    SELECT job_id, partition_date, NULL, reasons || char(59) || ' '
    FROM scoring_quarantine
    WHERE job_id IN (SELECT job_id FROM {jobs})
    UNION ALL
    SELECT job_id, partition_date, SUBSTR(rest, 1, INSTR(rest, char(59) || ' ') - 1), SUBSTR(rest, INSTR(rest, char(59) || ' ') + 2)
    FROM codes
    WHERE rest <> ''
)
SELECT job_id, partition_date, reason, COUNT(*) AS row_count
FROM codes
WHERE reason IS NOT NULL AND reason <> ''
GROUP BY job_id, partition_date, reason;

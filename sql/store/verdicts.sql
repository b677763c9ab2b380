-- Realised performance per arm and the verdict (pipeline.verdicts): the rows of scoring_ab_results
-- (sql/migrations/012_ab_verdicts.sql) and the analysts' view of a job's rows.

-- name: live_run
-- the ledger row of the attempt that published a partition (its run id is on the predictions' rows)
SELECT model_version, arms FROM scoring_runs
WHERE job_id = :job_id AND run_id = :run_id AND partition_date = :day
ORDER BY CASE WHEN status = 'success' THEN 0 ELSE 1 END, attempt DESC LIMIT 1;

-- name: challenger_refs
-- the references (as the job file names them) of the challengers compared on a partition
SELECT challenger_version, challenger_ref FROM scoring_shadow_comparisons
WHERE job_id = :job_id AND partition_date = :day AND challenger_version IS NOT NULL;

-- name: delete_day
DELETE FROM scoring_ab_results WHERE job_id = :job_id AND partition_date = :day AND scope = 'day';

-- name: delete_periods_from
-- the cumulative rows from a day on: made again from the day rows (a re-evaluated day changes them all)
DELETE FROM scoring_ab_results WHERE job_id = :job_id AND partition_date >= :day AND scope = 'period';

-- name: day_rows
SELECT * FROM scoring_ab_results WHERE job_id = :job_id AND scope = 'day' ORDER BY partition_date;

-- name: insert
INSERT INTO scoring_ab_results (job_id, partition_date, scope, design, arm, model_name, model_version,
    champion_version, period, first_partition, days, metric, confidence, min_rows, rows, champion_rows, value,
    value_ci_low, value_ci_high, champion_value, champion_ci_low, champion_ci_high, difference, difference_ci_low,
    difference_ci_high, p_value, verdict, reason, loss_sum, loss_sumsq, champion_loss_sum, champion_loss_sumsq,
    diff_sum, diff_sumsq, outcome_date, computed_at)
VALUES (:job_id, :partition_date, :scope, :design, :arm, :model_name, :model_version, :champion_version, :period,
    :first_partition, :days, :metric, :confidence, :min_rows, :rows, :champion_rows, :value, :value_ci_low,
    :value_ci_high, :champion_value, :champion_ci_low, :champion_ci_high, :difference, :difference_ci_low,
    :difference_ci_high, :p_value, :verdict, :reason, :loss_sum, :loss_sumsq, :champion_loss_sum,
    :champion_loss_sumsq, :diff_sum, :diff_sumsq, :outcome_date, :computed_at);

-- name: latest
-- the newest cumulative verdict of a version against a champion (an A/B arm's before a shadow's of the same day)
SELECT * FROM scoring_ab_results
WHERE job_id = :job_id AND model_version = :model_version AND champion_version = :champion_version
AND scope = 'period'
ORDER BY partition_date DESC, CASE WHEN design = 'ab' THEN 0 ELSE 1 END, computed_at DESC LIMIT 1;

-- name: for_partition
SELECT * FROM scoring_ab_results WHERE job_id = :job_id AND partition_date = :day AND scope = :scope
ORDER BY CASE WHEN design = 'ab' THEN 0 ELSE 1 END, arm, model_version;

-- name: view
-- {view}: the job's verdicts for analysts (scoring_ab_results of the job, without the job id); {results} is
-- unqualified: the view binds to the operational table the session's search path finds
DROP VIEW IF EXISTS {view};
CREATE VIEW {view} AS
SELECT partition_date, scope, design, arm, model_name, model_version, champion_version, period, first_partition,
       days, metric, confidence, min_rows, rows, champion_rows, value, value_ci_low, value_ci_high, champion_value,
       champion_ci_low, champion_ci_high, difference, difference_ci_low, difference_ci_high, p_value, verdict,
       reason, outcome_date, computed_at
FROM {results}
WHERE job_id = {job};

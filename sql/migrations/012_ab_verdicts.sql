-- Realised performance per arm and its verdict (issue 28, pipeline/verdicts.py): for each version judged
-- against the champion, per evaluated partition (scope 'day', with the sufficient statistics so days add up)
-- and cumulative over the assignment period up to that partition (scope 'period'; a shadow challenger: over
-- every evaluated day of the pair). The mean losses, their difference with its interval and the verdict.
CREATE TABLE IF NOT EXISTS scoring_ab_results (
    job_id              TEXT NOT NULL,
    partition_date      DATE NOT NULL,     -- the evaluated partition; for scope 'period': the last day combined
    scope               TEXT NOT NULL,     -- day | period (cumulative up to partition_date)
    design              TEXT NOT NULL,     -- ab (unpaired: each version on its own arm's rows) | shadow (paired)
    arm                 TEXT NOT NULL,     -- the arm's name in model.split (ab) or the challenger's ref (shadow)
    model_name          TEXT NOT NULL,
    model_version       INTEGER NOT NULL,  -- the version judged
    champion_version    INTEGER NOT NULL,  -- the version it is judged against
    period              INTEGER,           -- the A/B assignment period (scoring_ab_periods); NULL: shadow / unknown
    first_partition     DATE NOT NULL,     -- first day combined (= partition_date for scope 'day')
    days                INTEGER NOT NULL,  -- days combined
    metric              TEXT NOT NULL,     -- log_loss | brier | error_rate | squared_error | absolute_error
    confidence          DOUBLE PRECISION NOT NULL,
    min_rows            BIGINT NOT NULL,
    rows                BIGINT NOT NULL,   -- labelled rows of the version (paired: the pairs)
    champion_rows       BIGINT NOT NULL,   -- labelled rows of the champion (paired: the pairs)
    value               DOUBLE PRECISION,  -- the version's mean loss
    value_ci_low        DOUBLE PRECISION,
    value_ci_high       DOUBLE PRECISION,
    champion_value      DOUBLE PRECISION,  -- the champion's mean loss
    champion_ci_low     DOUBLE PRECISION,
    champion_ci_high    DOUBLE PRECISION,
    difference          DOUBLE PRECISION,  -- value - champion_value (below 0: the version is better)
    difference_ci_low   DOUBLE PRECISION,
    difference_ci_high  DOUBLE PRECISION,
    p_value             DOUBLE PRECISION,  -- two-sided, difference = 0
    verdict             TEXT NOT NULL,     -- better | worse | not_yet
    reason              TEXT NOT NULL,     -- "v2 better than v1: log_loss -0.021 [-0.03, -0.012] at 95% on 5000/5000 rows"
    loss_sum            DOUBLE PRECISION NOT NULL,   -- sufficient statistics (days combine by adding them)
    loss_sumsq          DOUBLE PRECISION NOT NULL,
    champion_loss_sum   DOUBLE PRECISION NOT NULL,
    champion_loss_sumsq DOUBLE PRECISION NOT NULL,
    diff_sum            DOUBLE PRECISION,  -- paired only: sum and sum of squares of (loss - champion loss)
    diff_sumsq          DOUBLE PRECISION,
    outcome_date        DATE,              -- the outcomes' date (scope 'day')
    computed_at         {ts} NOT NULL,
    PRIMARY KEY (job_id, partition_date, scope, design, arm, model_version, champion_version)
);
CREATE INDEX IF NOT EXISTS scoring_ab_results_pair
    ON scoring_ab_results (job_id, model_version, champion_version, scope, partition_date);

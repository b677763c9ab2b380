-- Realised performance (pipeline/outcomes.py): one row per job, scored partition, model version,
-- role (champion or challenger) and metric, once the partition's outcomes have arrived.
-- Replaced with the partition by each evaluation (`scoring outcomes`).
CREATE TABLE IF NOT EXISTS scoring_performance (
    job_id           TEXT NOT NULL,
    partition_date   DATE NOT NULL,
    model_name       TEXT NOT NULL,
    model_version    INTEGER NOT NULL,
    role             TEXT NOT NULL,          -- champion | challenger
    metric           TEXT NOT NULL,          -- roc_auc, log_loss, accuracy, brier, calibration_gap, mae, rmse
    value            DOUBLE PRECISION,       -- NULL when undefined (e.g. AUC with one class only)
    rows_predicted   BIGINT NOT NULL,
    rows_labelled    BIGINT NOT NULL,
    bound            DOUBLE PRECISION,       -- the floor or ceiling of outcomes.floors / ceilings, if any
    breached         BOOLEAN NOT NULL,       -- below its floor or above its ceiling
    outcome_date     DATE NOT NULL,
    computed_at      {ts} NOT NULL,
    PRIMARY KEY (job_id, partition_date, model_version, role, metric)
);

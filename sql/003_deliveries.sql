-- Push mode: the delivery state of every batch of a partition (one row per batch).
-- A task retry or a re-run skips batches already 'delivered' with the same idempotency key.
-- Later columns come from sql/migrations/ (plan: 002).
CREATE TABLE IF NOT EXISTS scoring_deliveries (
    job_id            TEXT NOT NULL,
    partition_date    DATE NOT NULL,
    batch_no          INTEGER NOT NULL,
    batch_count       INTEGER NOT NULL,
    idempotency_key   TEXT NOT NULL,          -- covers job, partition, model version, plan, batch and content
    sink              TEXT NOT NULL,          -- e.g. webhook:http://host:port/offers (no credentials)
    model_name        TEXT NOT NULL,
    model_version     INTEGER NOT NULL,
    row_count         BIGINT NOT NULL,
    status            TEXT NOT NULL,          -- pending | delivered | dead_letter
    attempts          INTEGER NOT NULL,       -- delivery attempts since the batch was planned
    last_error        TEXT,
    dead_letter_path  TEXT,                   -- Parquet file holding the rows while dead-lettered
    run_id            TEXT NOT NULL,          -- the run (or redrive) that last touched the batch
    updated_at        {ts} NOT NULL,
    delivered_at      {ts},
    PRIMARY KEY (job_id, partition_date, batch_no)
);

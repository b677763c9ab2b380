-- The online door's records (pipeline.store.online, pipeline.serve.recorder and pipeline.serve.drift):
-- <output.table>_online, one row per answered row of a request.
-- Named statements (-- name: <name>), read by pipeline.store.sqlfiles: {placeholders} are validated, quoted
-- identifiers; values are bound (:name), never written into the text.

-- name: create_online
-- {online}: <output.table>_online in the analysts' schema; {by_day}: its index by day (an unqualified name).
-- A request's row is written once: a write retried after an unknown outcome meets the primary key.
-- arm (model.split's arm of the row's entity; null without a split) is last: a table made before it existed
-- gets it added at the end (pipeline.store.online.ensure_online), so old and new tables have one layout.
CREATE TABLE IF NOT EXISTS {online} (
    request_id      TEXT NOT NULL,
    row_index       INTEGER NOT NULL,
    entity_key      {key_type},
    received_at     {ts} NOT NULL,
    day             DATE NOT NULL,
    model_name      TEXT,
    model_version   INTEGER,
    status          TEXT NOT NULL,
    prediction      TEXT,
    score           DOUBLE PRECISION,
    flags           TEXT,
    reasons         TEXT,
    inputs          TEXT,
    inputs_sha256   TEXT NOT NULL,
    arm             TEXT,
    PRIMARY KEY (request_id, row_index)
);
CREATE INDEX IF NOT EXISTS {by_day} ON {online} (day);

-- name: insert_online
-- a row already there (the same request id and index: a retried write) is left as it is
INSERT INTO {online} (request_id, row_index, entity_key, received_at, day, model_name, model_version, status,
                      prediction, score, flags, reasons, inputs, inputs_sha256, arm)
VALUES (:request_id, :row_index, :entity_key, :received_at, :day, :model_name, :model_version, :status,
        :prediction, :score, :flags, :reasons, :inputs, :inputs_sha256, :arm)
ON CONFLICT (request_id, row_index) DO NOTHING;

-- name: scored_inputs
-- a day's scored rows with their inputs, in a stable order (read in batches by keyset: :after_request, :after_row)
SELECT request_id, row_index, model_name, model_version, prediction, score, inputs FROM {online}
WHERE day = :day AND status = 'scored' AND inputs IS NOT NULL
  AND (request_id > :after_request OR (request_id = :after_request AND row_index > :after_row))
ORDER BY request_id, row_index
LIMIT :limit;

-- name: count_day
-- a day's rows by status, and those scored without their inputs (online.record_inputs: false)
SELECT status, COUNT(*) AS n, SUM(CASE WHEN inputs IS NULL THEN 1 ELSE 0 END) AS no_inputs FROM {online}
WHERE day = :day GROUP BY status;

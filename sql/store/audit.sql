-- The model audit (pipeline.promotion): every promotion, rollback and refused promotion of a model's alias, in the
-- registry database (sql/migrations/013_model_audit.sql). Rows are only added, never changed.

-- name: insert
INSERT INTO scoring_model_audit (id, model_name, alias, event, gate, from_version, to_version, requested_by, at,
                                 reason, decision, job_id, figures, source, run_id)
VALUES (:id, :model_name, :alias, :event, :gate, :from_version, :to_version, :requested_by, :at, :reason, :decision,
        :job_id, :figures, :source, :run_id);

-- name: of_model
SELECT id, model_name, alias, event, gate, from_version, to_version, requested_by, at, reason, decision, job_id,
       figures, source, run_id
FROM scoring_model_audit WHERE model_name = :n ORDER BY at DESC, id LIMIT :limit;

-- name: every
SELECT id, model_name, alias, event, gate, from_version, to_version, requested_by, at, reason, decision, job_id,
       figures, source, run_id
FROM scoring_model_audit ORDER BY at DESC, id LIMIT :limit;

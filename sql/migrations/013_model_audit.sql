-- DRAFT (owned by the promotion helper, issue 28): every promotion and rollback, with who, when, why, figures.
CREATE TABLE IF NOT EXISTS scoring_model_audit (
    model_name   TEXT NOT NULL,
    event        TEXT NOT NULL,
    at           {ts} NOT NULL
);

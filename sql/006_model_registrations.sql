-- The registration record (anchor) of every model version: the sha256 of its artifact and of its
-- card, written by `scoring models register` / `scoring models anchor`, read before a worker loads
-- the version. It lives here, outside the models folder, so that whoever can write that folder
-- cannot make a changed artifact or card look registered. Rows are never updated but for deleted_at.
CREATE TABLE IF NOT EXISTS scoring_model_registrations (
    model_name       TEXT NOT NULL,
    version          INTEGER NOT NULL,
    artifact_sha256  TEXT NOT NULL,
    card_sha256      TEXT NOT NULL,
    origin           TEXT NOT NULL,          -- registered | adopted
    registered_at    {ts} NOT NULL,
    registered_by    TEXT NOT NULL,
    deleted_at       {ts},
    PRIMARY KEY (model_name, version)
);

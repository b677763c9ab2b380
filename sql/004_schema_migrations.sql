-- Which files of sql/migrations/ have been applied to this database.
CREATE TABLE IF NOT EXISTS scoring_schema_migrations (
    name        TEXT PRIMARY KEY,
    applied_at  {ts} NOT NULL
);

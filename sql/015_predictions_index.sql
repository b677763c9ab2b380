-- {by_key}: lookups of one entity's history in a predictions table whose primary key leads with
-- the partition date (SQLite's, PostgreSQL's made before issue 15); store.ensure_predictions applies it to those only.
CREATE INDEX IF NOT EXISTS {by_key} ON {predictions} ({key});

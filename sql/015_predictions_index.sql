-- {by_key}: lookups of one entity's history in a predictions table (its primary key leads with
-- the partition date); created for new and existing tables alike.
CREATE INDEX IF NOT EXISTS {by_key} ON {predictions} ({key});

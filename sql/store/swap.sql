-- PostgreSQL: a partition loaded into a table of its own, indexed, swapped in (pipeline.store.swap).
-- {load}: the load table; {parent}: the predictions table; {day}: the day, a DATE literal (DDL takes
-- no bound parameter); the other values are bound ($1, $2 through ADBC).

-- name: create_load
-- LIKE the parent, with a CHECK on the day: checked row by row by the COPY, it lets ATTACH skip its scan
CREATE TABLE {load} (LIKE {parent} INCLUDING DEFAULTS, CHECK (partition_date = {day}));

-- name: mark_load
COMMENT ON TABLE {load} IS {mark};

-- name: set_default
ALTER TABLE {load} ALTER COLUMN {column} SET DEFAULT {value};

-- name: drop_default
ALTER TABLE {load} ALTER COLUMN {column} DROP DEFAULT;

-- name: analyze
ANALYZE {load};

-- name: parent_indexes
-- the parent's plain indexes (no expression, no predicate), the primary key first: primary?, unique?, columns
SELECT i.indisprimary, i.indisunique, ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(num, pos)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.pos)
FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indexprs IS NULL AND i.indpred IS NULL
ORDER BY i.indisprimary DESC;

-- name: primary_index
CREATE UNIQUE INDEX {name} ON {load} ({columns});

-- name: unique_index
CREATE UNIQUE INDEX ON {load} ({columns});

-- name: index
CREATE INDEX ON {load} ({columns});

-- name: index_lock_timeout
-- the load table is this persist's alone: an index build never waits long
SET lock_timeout = '60s';

-- name: primary_key
ALTER TABLE {load} ADD PRIMARY KEY USING INDEX {name};

-- name: lock_latest
-- one publish of the table at a time keeps its latest rows (readers are not held: they take ACCESS SHARE)
LOCK TABLE {current} IN SHARE ROW EXCLUSIVE MODE;

-- name: columns_of
SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

-- name: delete_quarantine
DELETE FROM scoring_quarantine WHERE job_id = $1 AND partition_date = $2;

-- name: partitions_of_day
-- the partitions of $1 that hold the day whose bound is $2 (FOR VALUES IN ('yyyy-mm-dd'))
SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::regclass AND pg_get_expr(c.relpartbound, c.oid) = $2;

-- name: detach
ALTER TABLE {parent} DETACH PARTITION {old};

-- name: drop
DROP TABLE {old};

-- name: rename_load
ALTER TABLE {load} RENAME TO {final};

-- name: attach
ALTER TABLE {parent} ATTACH PARTITION {partition} FOR VALUES IN ({day});

-- name: note_partition
COMMENT ON TABLE {partition} IS {note};

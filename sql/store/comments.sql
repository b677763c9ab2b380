-- COMMENT ON the tables, views and columns (pipeline.store.comments; texts: sql/dictionary.yaml).
-- A COMMENT takes no bound parameter: {text} is a string literal quoted by the dialect.

-- name: comment_table
COMMENT ON TABLE {object} IS {text};

-- name: comment_view
COMMENT ON VIEW {object} IS {text};

-- name: comment_column
COMMENT ON COLUMN {object}.{column} IS {text};

-- name: comments_in_place
-- the comments of the named tables and views (column NULL) and of their columns
SELECT c.relname, NULL AS col, obj_description(c.oid, 'pg_class') FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = COALESCE(:s, current_schema()) AND c.relname = ANY(:names)
UNION ALL
SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = COALESCE(:s, current_schema()) AND c.relname = ANY(:names);

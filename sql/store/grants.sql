-- Who may read (pipeline.store.grants): the analysts' read-only role, and the readers of views.

-- name: role_exists
SELECT 1 FROM pg_roles WHERE rolname = :r;

-- name: may_create_roles
SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user;

-- name: create_role
CREATE ROLE {role} NOLOGIN;

-- name: grant_schema
-- read every table and view of the schema, now and later
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role};
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role};

-- name: database_and_user
SELECT current_database(), current_user;

-- name: logins_with_temporary
SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> :me
AND has_database_privilege(oid, current_database(), 'TEMPORARY');

-- name: no_temporary
-- TEMPORARY kept by the pipeline's own role {me}, taken from PUBLIC and from {role}
GRANT TEMPORARY ON DATABASE {database} TO {me};
REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC;
REVOKE TEMPORARY ON DATABASE {database} FROM {role};

-- name: may_make_temporary
SELECT has_database_privilege(CAST(:r AS name), current_database(), 'TEMPORARY');

-- name: database_owner
SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d;

-- name: view_readers
-- (view or table, role) of every SELECT granted on them to roles other than their owner
SELECT table_name, grantee FROM information_schema.role_table_grants WHERE privilege_type = 'SELECT'
AND table_schema = COALESCE(:s, current_schema()) AND table_name = ANY(:v) AND grantee <> current_user;

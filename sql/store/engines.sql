-- SQLite connections (pipeline.store.engines): readers never block the writer, writers wait a minute.

-- name: wal
PRAGMA journal_mode=WAL;

-- name: busy_timeout
PRAGMA busy_timeout=60000;

#!/bin/bash
# PostgreSQL init (docker-compose): a separate database and role for predictions.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE scoring LOGIN PASSWORD '${SCORING_DB_PASSWORD}';
CREATE DATABASE scoring OWNER scoring;
SQL

"""Truthful attempts (issue 13): holder, heartbeat, published copy: sql/migrations/004_run_leases.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0005_run_leases"
down_revision = "0004_run_warnings"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/004_run_leases.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "004_run_leases.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

"""Cascade inference (issue 14): per-route counts of an attempt: sql/migrations/005_run_routes.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0006_run_routes"
down_revision = "0005_run_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/005_run_routes.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "005_run_routes.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

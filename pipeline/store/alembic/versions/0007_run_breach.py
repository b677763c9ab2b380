"""Drift and quality with a visible state (issue 24): breach, p_value: sql/migrations/007_run_breach.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0007_run_breach"
down_revision = "0006_run_routes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/007_run_breach.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "007_run_breach.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

"""The batch plan of a delivery row (scoring redrive refuses to mix plans): sql/migrations/002_deliveries_plan.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0003_deliveries_plan"
down_revision = "0002_push_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/002_deliveries_plan.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "002_deliveries_plan.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

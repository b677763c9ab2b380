"""The online door (issue 27): scoring_drift.source, batch or online: sql/migrations/010_drift_source.sql."""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0011_drift_source"
down_revision = "0010_part_seconds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/010_drift_source.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "010_drift_source.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

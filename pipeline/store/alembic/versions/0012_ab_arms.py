"""A/B by rule (issue 28): scoring_runs.arms and scoring_ab_periods: sql/migrations/011_ab_arms.sql."""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0012_ab_arms"
down_revision = "0011_drift_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/011_ab_arms.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "011_ab_arms.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

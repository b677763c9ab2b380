"""realised performance per arm and its verdict (issue 28): scoring_ab_results: sql/migrations/012_ab_verdicts.sql."""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0013_ab_verdicts"
down_revision = "0012_ab_arms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/012_ab_verdicts.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "012_ab_verdicts.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

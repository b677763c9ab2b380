"""the promotion gate (issue 28): scoring_model_audit, every promotion and rollback: sql/migrations/013_model_audit.sql."""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0014_model_audit"
down_revision = "0013_ab_verdicts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/013_model_audit.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "013_model_audit.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

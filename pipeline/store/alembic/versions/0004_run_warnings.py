"""What a run wants a person to know although it succeeded (issue 11): sql/migrations/003_run_warnings.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0004_run_warnings"
down_revision = "0003_deliveries_plan"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/003_run_warnings.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "003_run_warnings.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

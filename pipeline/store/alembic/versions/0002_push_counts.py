"""Push mode counts in the run ledger (issue 3): sql/migrations/001_push_counts.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0002_push_counts"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/001_push_counts.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "001_push_counts.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

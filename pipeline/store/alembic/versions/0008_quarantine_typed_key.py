"""Keys typed alike across tables (issue 24): the quarantine's entity_key_int: sql/migrations/008_quarantine_typed_key.sql.

Carried over from the release's own runner: skipped where that runner recorded the file in
scoring_schema_migrations.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0008_quarantine_typed_key"
down_revision = "0007_run_breach"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/008_quarantine_typed_key.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "008_quarantine_typed_key.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

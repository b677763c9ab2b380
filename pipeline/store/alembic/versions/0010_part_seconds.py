"""The second house (issue 26): the seconds of each part of a step: sql/migrations/009_part_seconds.sql.

A revision of its own (the release's runner never had the file); it is recorded in scoring_schema_migrations
like the carried-over ones.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0010_part_seconds"
down_revision = "0009_timestamptz_jsonb"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply sql/migrations/009_part_seconds.sql unless it is recorded."""
    migrate.apply_file(op.get_bind(), "009_part_seconds.sql")


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

"""${message}

Revision ${up_revision} (after ${down_revision | comma,n}), made ${create_date}.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    """${message}"""
    migrate.apply_file(op.get_bind(), "NNN_name.sql")  # the new file of sql/migrations/ (see the revisions before)


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

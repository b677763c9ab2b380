"""PostgreSQL (issue 12): the operational tables' timestamps as timestamptz and their JSON as jsonb.

Their naive values were UTC. Columns already converted are left alone, so a database made since is
unchanged. The release ran this at every start; it is a revision now (a job's own tables still get it
when they are ensured).
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate, operational

revision = "0009_timestamptz_jsonb"
down_revision = "0008_quarantine_typed_key"
branch_labels = None
depends_on = None

TIMESTAMP_COLUMNS = {"scoring_runs": ("started_at", "finished_at"), "scoring_quarantine": ("quarantined_at",),
                     "scoring_deliveries": ("updated_at", "delivered_at"), "scoring_drift": ("computed_at",),
                     "scoring_schema_migrations": ("applied_at",)}
JSON_COLUMNS = {"scoring_runs": ("stage_seconds",), "scoring_quarantine": ("row_values",)}


def upgrade() -> None:
    """Convert the columns still of the old types."""
    for table, columns in TIMESTAMP_COLUMNS.items():
        operational.upgrade_types(op.get_bind(), table, columns, JSON_COLUMNS.get(table, ()))


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

"""The baseline: the operational tables as sql/001 to sql/008 make them.

``IF NOT EXISTS``: a database made before Alembic keeps its tables and rows.

These files and the tuple below are frozen: a change to the operational schema is a new revision.
"""

from __future__ import annotations

from alembic import op

from pipeline.store import migrate

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

LEDGER_FILES = ("001_scoring_runs.sql", "002_quarantine.sql", "003_deliveries.sql", "004_schema_migrations.sql",
                "005_drift.sql", "006_model_registrations.sql", "007_shadow_comparisons.sql",
                "008_performance.sql")


def upgrade() -> None:
    """Create the operational tables that are missing."""
    migrate.run_files(op.get_bind(), LEDGER_FILES)


def downgrade() -> None:
    """Refused: migrations only go forward."""
    migrate.forward_only(revision)

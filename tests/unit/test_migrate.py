"""Migrations through Alembic (pipeline.store.migrate): one line of revisions carrying every file of
sql/migrations/, an upgrade that does nothing the second time, and concurrent starts that do not race."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from pipeline.errors import StoreError
from pipeline.store import engines, migrate, operational
from tests.conftest import ROOT, scoring_cli

VERSIONS = migrate.ALEMBIC_DIR / "versions"


def _applied_files(path: Path) -> list[str]:
    """The sql/migrations/ files a revision applies (its ``migrate.apply_file(..., "<name>")`` calls)."""
    return [node.args[1].value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "apply_file"]


def test_one_line_of_revisions_carries_every_migration_file_once_in_order() -> None:
    script = ScriptDirectory.from_config(migrate.config())
    assert script.get_heads() == [migrate.HEAD] and migrate.script_head() == migrate.HEAD, \
        "one head, migrate.HEAD: the revisions are one line"
    line = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert line[0] == "0001_ledger" and line[-1] == migrate.HEAD
    carried = [name for rev in line for name in _applied_files(Path(script.get_revision(rev).path))]
    files = sorted(p.name for p in (ROOT / "sql" / "migrations").glob("*.sql"))
    assert carried == files, "each file of sql/migrations/ is applied by one revision, in name order"


def test_a_new_database_is_made_by_upgrading_to_the_head_and_a_second_upgrade_does_nothing(tmp_path: Path) -> None:
    engine = engines.engine_for(f"sqlite:///{tmp_path / 'new.db'}")
    files = sorted(p.name for p in (ROOT / "sql" / "migrations").glob("*.sql"))
    assert migrate.upgrade(engine) == files
    with engine.connect() as conn:
        assert migrate.current(conn) == migrate.HEAD and migrate.recorded(conn) == set(files)
        version = conn.execute(sa.text(f"SELECT count(*) FROM {migrate.VERSION_TABLE}")).scalar()
    assert version == 1
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    assert migrate.upgrade(engine) == [] and migrate.apply_migrations(engine) == []
    assert statements and all(s.lstrip().upper().startswith(("SELECT", "PRAGMA")) for s in statements), \
        "at the head an upgrade only reads"


def test_an_upgrade_refuses_to_go_back_and_a_database_of_a_newer_release(tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="migrations only go forward"):
        migrate.forward_only("0002_push_counts")
    engine = engines.engine_for(f"sqlite:///{tmp_path / 'newer.db'}")
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0042_from_the_future'"))
    with pytest.raises(StoreError, match="is at schema revision 0042_from_the_future, which this release does not "
                                         f"know \\(its newest is {migrate.HEAD}\\): a newer release upgraded it"):
        migrate.upgrade(engine)


def test_the_ledger_is_ensured_through_the_revisions(tmp_path: Path) -> None:
    engine = engines.engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    operational.ensure_ledger(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"scoring_runs", "scoring_quarantine", "scoring_deliveries", "scoring_schema_migrations", "scoring_drift",
            "scoring_model_registrations", "scoring_shadow_comparisons", "scoring_performance",
            "scoring_ab_periods", "scoring_ab_results", "scoring_model_audit", migrate.VERSION_TABLE} == tables
    columns = {c["name"] for c in sa.inspect(engine).get_columns("scoring_quarantine")}
    assert "entity_key_int" in columns, "the last carried-over migration ran"


UPGRADE = "from pipeline.store import engines, migrate; import sys; print(migrate.upgrade(engines.engine_for(sys.argv[1])))"


def concurrent_upgrades(url: str, n: int = 4) -> list[str]:
    """What ``n`` processes starting at once print: each upgrades the same new database."""
    procs = [subprocess.Popen([sys.executable, "-c", UPGRADE, url], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    return sorted(out.strip() for out, _ in outs)


def test_concurrent_starts_on_sqlite_migrate_once(tmp_path: Path) -> None:
    outs = concurrent_upgrades(f"sqlite:///{tmp_path / 'race.db'}")
    assert outs.count("[]") == 3 and any(out.startswith("['001_push_counts.sql'") for out in outs), outs


def test_scoring_db_upgrade_migrates_and_names_the_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCORING_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    engines.engine_for.cache_clear()
    first, second = scoring_cli("db", "upgrade"), scoring_cli("db", "upgrade")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert f"revision {migrate.HEAD} (the newest); applied 001_push_counts.sql, 002_deliveries_plan.sql" in first.stdout
    assert f"revision {migrate.HEAD} (the newest); no migration file to apply" in second.stdout


def test_a_start_at_the_newest_revision_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    migrate.upgrade(engines.engine_for(url))
    code = ("import sys; from pipeline.store import engines, operational; "
            f"operational.ensure_ledger(engines.engine_for({url!r})); print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr

"""Every ```bash block of README.md and docs/ (outside the byo walk-through) runs as written.

A page's blocks run in page order in one ``bash -Eeuo pipefail`` shell (a later block may use what
an earlier one made or exported), in a scratch copy of a fresh checkout in the state the docs
assume: after ``make demo`` and ``make demo-push`` (tests/docs/conftest.py ``demo_checkout``: the
demo's models, partitions and ``.data/scoring.db`` with the shipped jobs' runs; no ``.airflow/``
yet, which a ``make demo`` in a block creates). The environment is a user's: none of the test
process's ``SCORING_*``/``AIRFLOW_*`` variables, ``.venv/bin`` first on PATH, ``SCORING_HOME`` at
the copy. A page that talks to PostgreSQL (``psql``, a ``postgresql://`` URL) gets a fresh database
of its own through ``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE``. Each page must exit 0 within
the timeout with no Python traceback on stderr; a failure names the Markdown file and line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.docs.blocks import Block, bash_pages, parse
from tests.docs.conftest import SCORED_DAYS
from tests.docs.runner import run_blocks, user_env

PAGES = bash_pages()
TIMEOUT_S = 900
USES_AIRFLOW = re.compile(r"\bairflow\b|\bmake\s+demo")
USES_POSTGRES = re.compile(r"\bpsql\b|postgres(ql)?://")


def _param(page: Path, blocks: list[Block]) -> object:
    code = "\n".join(b.code for b in blocks)
    marks = [pytest.mark.slow]
    if USES_AIRFLOW.search(code):
        marks.append(pytest.mark.airflow)
    if USES_POSTGRES.search(code):
        marks.append(pytest.mark.postgres)
    return pytest.param(page, marks=marks, id=str(page))


@pytest.fixture
def page_postgres(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """libpq variables for a fresh database of the page's own, when its blocks use PostgreSQL."""
    page: Path = request.node.callspec.params["page"]
    if not USES_POSTGRES.search("\n".join(b.code for b in PAGES[page])):
        yield {}
        return
    import psycopg

    server = request.getfixturevalue("pg_server")
    name = f"docs_page_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(server)
    try:
        yield {"PGHOST": url.hostname or "127.0.0.1", "PGPORT": str(url.port or 5432),
               "PGUSER": url.username or "postgres", "PGDATABASE": name}
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("page", [_param(p, b) for p, b in PAGES.items()])
def test_the_bash_blocks_of_a_page_run_in_order(page: Path, demo_checkout: Path, page_postgres: dict[str, str],
                                                 tmp_path: Path) -> None:
    blocks = PAGES[page]
    out = run_blocks(blocks, demo_checkout, user_env(demo_checkout, **page_postgres), tmp_path / "scripts",
                     timeout=TIMEOUT_S)
    assert out.returncode == 0, f"{page} ({', '.join(b.where for b in blocks)}): " + out.report()
    assert "Traceback (most recent call last)" not in out.stderr, f"{page}: a Python traceback\n" + out.report()


@pytest.mark.slow
def test_the_demo_checkout_is_what_make_demo_leaves(demo_checkout: Path, tmp_path: Path) -> None:
    """The state the pages' shells start from: the demo's models, runs and database, reached as a user would."""
    page = tmp_path / "page.md"
    page.write_text("```bash\n"
                    'export AIRFLOW_CONN_SCORING_DB="sqlite:///$PWD/.data/scoring.db"\n'
                    "scoring models list churn\n"
                    "scoring runs churn_daily --date 2026-11-20\n"
                    "scoring deliveries promotions_daily --date 2026-11-20 --all | tail -n 1\n"
                    "sqlite3 .data/scoring.db \"SELECT COUNT(DISTINCT partition_date) FROM churn_predictions\"\n"
                    "```\n")
    blocks, _ = parse(page, tmp_path)
    out = run_blocks(blocks, demo_checkout, user_env(demo_checkout), tmp_path / "scripts", timeout=TIMEOUT_S)
    assert out.returncode == 0, out.report()
    assert "champion" in out.stdout and "challenger" in out.stdout
    assert "success" in out.stdout and "LIVE" in out.stdout
    assert "delivered 5 batches / 500 rows" in out.stdout
    assert out.stdout.rstrip().endswith(str(len(SCORED_DAYS)))

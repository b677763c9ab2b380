"""Every SQL query in the README runs, on SQLite and on PostgreSQL, against tables a real run made."""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

from pipeline import local, store
from pipeline.config import load_job
from tests.conftest import DAY, ROOT, write_job, write_partition


def readme_queries() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    statements = []
    for block in blocks:
        body = "\n".join(line.split("--", 1)[0] for line in block.splitlines())
        statements += [s.strip() for s in body.split(";") if s.strip()]
    return statements


def test_the_readme_queries_run_on_both_databases(any_db: str, home: Path) -> None:
    write_partition(home, DAY, n=1500)
    job = load_job(write_job(home, job_id="churn_daily", output={"table": "churn_predictions",
                                                                  "connection": "scoring_db"}))
    local.run_partition(job, DAY, run_id="readme")
    engine = store.engine_for(store.resolve_url("scoring_db"))
    queries = readme_queries()
    assert len(queries) >= 5
    results = {}
    with engine.connect() as conn:
        for query in queries:
            results[query] = conn.execute(sa.text(query)).fetchall()  # fails the test on a query error
    top = next(rows for q, rows in results.items() if "ORDER BY p.score DESC" in q)
    assert len(top) == 20 and top[0][1] >= top[-1][1]
    drift = next(rows for q, rows in results.items() if "FROM scoring_drift" in q)
    assert drift and all(isinstance(float(r[2]), float) for r in drift)
    ledger = next(rows for q, rows in results.items() if "FROM scoring_runs" in q)
    assert ledger[0][1] == "success"

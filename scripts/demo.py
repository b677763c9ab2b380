"""`make demo`: run the churn job for one partition through Airflow on SQLite, then show it.

Creates the demo partitions and the demo model when they are absent, migrates the local
Airflow home (.airflow/, SQLite), runs `airflow dags test churn_daily <date>`, and prints
the rows written, the run's ledger row and a query to paste.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(args: list[str], log: Path) -> int:
    with log.open("w") as fh:
        return subprocess.call(args, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", default="2026-11-20", help="partition to score")
    args = parser.parse_args()
    day = dt.date.fromisoformat(args.date)
    db = ROOT / ".data" / "scoring.db"
    os.environ.setdefault("AIRFLOW_CONN_SCORING_DB", f"sqlite:///{db}")
    os.environ.setdefault("SCORING_HOME", str(ROOT))

    from pipeline import demo_data
    from pipeline.registry import Registry
    from pipeline.train import train_churn

    data_root = ROOT / "data" / "churn"
    first = day - dt.timedelta(days=2)
    demo_data.write_days(data_root, first, 3)
    print(f"demo data: partitions {first} .. {day} in {data_root.relative_to(ROOT)}/")
    registry = Registry()
    if not registry.versions("churn"):
        mv = train_churn(registry, end=first)
        print(f"demo model: trained and registered churn v{mv.version} {mv.card['metrics']}")
    else:
        print(f"demo model: churn versions {registry.versions('churn')}, aliases {registry.aliases('churn')}")

    logs = ROOT / ".airflow" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if sh([str(BIN / "airflow"), "db", "migrate"], logs / "demo-db-migrate.log") != 0:
        print(f"airflow db migrate failed: see {logs / 'demo-db-migrate.log'}")
        return 1
    started = time.perf_counter()
    log = logs / f"demo-dags-test-{day}.log"
    print(f"running: airflow dags test churn_daily {day}  (log: {log.relative_to(ROOT)})")
    rc = sh([str(BIN / "airflow"), "dags", "test", "churn_daily", day.isoformat()], log)
    seconds = time.perf_counter() - started

    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        run = conn.execute(sa.text(
            "SELECT run_id, status, model_version, rows_in, rows_quarantined, rows_scored, rows_written, "
            "stage_seconds, error FROM scoring_runs WHERE job_id = 'churn_daily' AND partition_date = :d "
            "ORDER BY started_at DESC LIMIT 1"), {"d": day}).mappings().first()
        count = conn.execute(sa.text("SELECT COUNT(*) FROM churn_predictions WHERE partition_date = :d"),
                             {"d": day}).scalar() if run else 0
    print()
    if rc != 0 or run is None or run["status"] != "success":
        print(f"FAILED (airflow exit code {rc}); last lines of {log}:")
        print("\n".join(log.read_text().splitlines()[-25:]))
        if run:
            print(f"ledger: status={run['status']} error={run['error']}")
        return 1
    print(f"run {run['run_id']}: status {run['status']} in {seconds:.1f}s (model churn v{run['model_version']})")
    print(f"rows in {run['rows_in']}, quarantined {run['rows_quarantined']}, scored {run['rows_scored']}, "
          f"written {run['rows_written']}; churn_predictions holds {count} rows for {day}")
    print(f"stage seconds: {run['stage_seconds']}")
    query = (f"SELECT customer_id, score, prediction, model_version FROM churn_predictions "
             f"WHERE partition_date = '{day}' ORDER BY score DESC LIMIT 10;")
    print("\nTop churn risks, paste into a SQL client:")
    print(f"  sqlite3 {db.relative_to(ROOT)} \"{query}\"")
    print(f"  (or: {BIN.relative_to(ROOT)}/python -c \"import sqlite3; "
          f"[print(r) for r in sqlite3.connect('{db.relative_to(ROOT)}').execute(\\\"{query}\\\")]\")")
    with engine.connect() as conn:
        for row in conn.execute(sa.text(query.rstrip(";"))):
            print("   ", tuple(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

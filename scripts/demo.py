"""`make demo` / `make demo-push`: run a demo job for one partition through Airflow on SQLite.

Creates the demo partitions and the demo model when they are absent, migrates the local
Airflow home (.airflow/, SQLite) and runs `airflow dags test <job> <date>`.

The models are anchored in the registry database, where the demo's jobs check them: the
``scoring_db`` connection (.data/scoring.db) unless ``SCORING_REGISTRY_DB`` names another. Demo
models left in models/ by an earlier demo whose database was removed (`make clean`) are adopted
there as the folder holds them, and the demo says so.

- `make demo` (churn_daily, persist mode): prints the rows written, the run's ledger row
  and a query to paste.
- `make demo-cascade` (churn_cascade, cascade inference): trains the segment router and the two
  segment churn models when absent, runs the job and prints the rows per route.
- `make demo-push` (promotions_daily, push mode): starts the project's webhook receiver
  (pipeline/demo/receiver.py, a stand-in promotions engine) on a free 127.0.0.1 port, points
  the job's connection at it, and prints what the receiver got and the delivery state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pipeline import anchors
from pipeline.demo import data as demo_data
from pipeline.demo.cascade import train_cascade
from pipeline.demo.receiver import Receiver
from pipeline.demo.train import train_churn
from pipeline.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOGS = ROOT / ".airflow" / "logs"


def sh(args: list[str], log: Path) -> int:
    with log.open("w") as fh:
        return subprocess.call(args, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)


def prepare(day: dt.date) -> Path:
    """Demo data and model if absent, a migrated Airflow home; return the demo database path."""
    db = ROOT / ".data" / "scoring.db"
    os.environ.setdefault("AIRFLOW_CONN_SCORING_DB", f"sqlite:///{db}")
    os.environ.setdefault("SCORING_HOME", str(ROOT))


    data_root = ROOT / "data" / "churn"
    first = day - dt.timedelta(days=2)
    demo_data.write_days(data_root, first, 3)
    print(f"demo data: partitions {first} .. {day} in {data_root.relative_to(ROOT)}/")
    registry = Registry()
    anchor_demo_models(registry, ("churn",))
    if not registry.versions("churn"):
        mv = train_churn(registry, end=first)
        print(f"demo model: trained and registered churn v{mv.version} {mv.card['metrics']}")
    else:
        print(f"demo model: churn versions {registry.versions('churn')}, aliases {registry.aliases('churn')}")
    if "challenger" not in registry.aliases("churn"):  # churn_daily scores it in the champion's shadow
        mv = train_churn(registry, end=first - dt.timedelta(days=2), seed=11, alias="challenger")
        print(f"demo challenger: trained and registered churn v{mv.version} (alias challenger) {mv.card['metrics']}")
    LOGS.mkdir(parents=True, exist_ok=True)
    if sh([str(BIN / "airflow"), "db", "migrate"], LOGS / "demo-db-migrate.log") != 0:
        raise SystemExit(f"airflow db migrate failed: see {LOGS / 'demo-db-migrate.log'}")
    return db


def anchor_demo_models(registry: Any, names: tuple[str, ...]) -> None:
    """The demo's own models, anchored in the registry database where its jobs check them (pipeline.anchors).

    Registering anchors a version; versions the registry database does not know (an earlier demo's, whose
    database ``make clean`` removed) are adopted as the folder holds them, with a line that says so: the demo
    wrote that folder. Never adopt files you did not check (``scoring models verify`` first)."""
    if registry.anchors is None:
        raise SystemExit(f"demo: {anchors.not_configured()}")
    for name in names:
        if not (registry.versions(name) or registry.archived(name)) or registry.anchors.of(name):
            continue  # nothing to anchor, or anchored: a version the database does not know stays refused
        adopted = registry.anchor(name, skip_broken=True)
        if adopted:
            print(f"demo model: {name} {', '.join(f'v{a.version}' for a in adopted)} had no anchor in the registry "
                  f"database {registry.anchors.where} (an earlier demo's, whose database was removed): adopted as "
                  f"models/{name} holds them (`scoring models anchor {name}`)")


def dags_test(job_id: str, day: dt.date) -> tuple[int, Path, float]:
    started = time.perf_counter()
    log = LOGS / f"demo-{job_id}-{day}.log"
    print(f"running: airflow dags test {job_id} {day}  (log: {log.relative_to(ROOT)})")
    rc = sh([str(BIN / "airflow"), "dags", "test", job_id, day.isoformat()], log)
    return rc, log, time.perf_counter() - started


def failed(rc: int, run: Any, log: Path) -> bool:
    """Say why a demo run failed (Airflow's exit code, the log's tail, the ledger's error)."""
    if rc == 0 and run is not None and run["status"] == "success":
        return False
    print(f"FAILED (airflow exit code {rc}); last lines of {log}:")
    print("\n".join(log.read_text().splitlines()[-25:]))
    if run:
        print(f"ledger: status={run['status']} error={run['error']}")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--date", default="2026-11-20", help="partition to score")
    parser.add_argument("--push", action="store_true", help="run the push demo (promotions_daily)")
    parser.add_argument("--cascade", action="store_true", help="run the cascade demo (churn_cascade)")
    args = parser.parse_args()
    day = dt.date.fromisoformat(args.date)
    if args.cascade:
        return cascade_demo(day)
    return push_demo(day) if args.push else persist_demo(day)


def cascade_demo(day: dt.date) -> int:
    db = prepare(day)

    registry = Registry()
    anchor_demo_models(registry, ("segments", "churn_frequent", "churn_occasional"))
    if not all(registry.versions(m) for m in ("segments", "churn_frequent", "churn_occasional")):
        models = train_cascade(registry, end=day - dt.timedelta(days=3))
        print("demo cascade: trained and registered " + ", ".join(f"{m.name} v{m.version}" for m in models.values()))
    rc, log, seconds = dags_test("churn_cascade", day)

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        run = conn.execute(sa.text(
            "SELECT run_id, status, model_version, rows_in, rows_quarantined, rows_scored, rows_written, routes, "
            "error FROM scoring_runs WHERE job_id = 'churn_cascade' AND partition_date = :d "
            "ORDER BY started_at DESC LIMIT 1"), {"d": day}).mappings().first()
        per_route = conn.execute(sa.text(
            "SELECT route, model_name, model_version, COUNT(*) AS n, AVG(score) AS mean_score FROM "
            "churn_cascade_predictions WHERE partition_date = :d GROUP BY route, model_name, model_version "
            "ORDER BY route"), {"d": day}).all() if run else []
    print()
    if failed(rc, run, log):
        return 1

    routes = json.loads(run["routes"])
    print(f"run {run['run_id']}: status {run['status']} in {seconds:.1f}s, router {routes['router']}")
    print(f"rows in {run['rows_in']} = quarantined by the router {routes['router_quarantined']} + unrouted "
          f"{routes['unrouted']} + kept by the router {routes['kept']} + routed "
          f"{sum(r['rows'] for r in routes['routes'].values())}")
    for name, r in routes["routes"].items():
        print(f"  route {name:<11} -> {r['model']}: {r['rows']} rows, {r['scored']} scored, "
              f"{r['quarantined']} quarantined")
    print(f"scored {run['rows_scored']}, written {run['rows_written']}; in churn_cascade_predictions for {day}:")
    for route, model, version, n, mean in per_route:
        print(f"  route {route:<11} {model} v{version}: {n} rows, mean churn score {mean:.3f}")
    print(f"\nQuery it: sqlite3 {db.relative_to(ROOT)} \"SELECT route, model_name, COUNT(*) FROM "
          f"churn_cascade_predictions WHERE partition_date = '{day}' GROUP BY 1, 2;\"")
    return 0


def push_demo(day: dt.date) -> int:
    db = prepare(day)

    token = secrets.token_urlsafe(16)  # made up per demo run: no credential lives in the repo
    out = ROOT / ".data" / f"promotions-received-{day}.jsonl"
    out.unlink(missing_ok=True)
    with Receiver(token=token, out=out) as receiver:
        os.environ["AIRFLOW_CONN_PROMOTIONS_WEBHOOK"] = f"http://:{token}@127.0.0.1:{receiver.port}"
        print(f"receiver: the demo promotions engine listens on {receiver.url}/offers (bearer token required)")
        rc, log, seconds = dags_test("promotions_daily", day)
        stats = receiver.store.stats()
        rows = receiver.store.unique_rows()


    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        run = conn.execute(sa.text(
            "SELECT run_id, status, mode, model_version, rows_in, rows_quarantined, rows_scored, rows_not_selected, "
            "rows_delivered, rows_failed, rows_dead_lettered, sink, stage_seconds, error FROM scoring_runs "
            "WHERE job_id = 'promotions_daily' AND partition_date = :d ORDER BY started_at DESC LIMIT 1"),
            {"d": day}).mappings().first()
        state = conn.execute(sa.text(
            "SELECT status, COUNT(*), SUM(row_count) FROM scoring_deliveries WHERE job_id = 'promotions_daily' "
            "AND partition_date = :d GROUP BY status"), {"d": day}).all()
    print()
    if failed(rc, run, log):
        return 1
    print(f"run {run['run_id']}: {run['status']} in {seconds:.1f}s, mode {run['mode']}, model churn "
          f"v{run['model_version']}, sink {run['sink']}")
    print(f"rows in {run['rows_in']} = delivered {run['rows_delivered']} + not selected {run['rows_not_selected']} "
          f"+ quarantined {run['rows_quarantined']} (dead-lettered {run['rows_dead_lettered']})")
    print(f"delivery state: {', '.join(f'{s}: {n} batches / {r} rows' for s, n, r in state)}")
    print(f"receiver: {stats['posts_accepted']} batches, {stats['rows_unique']} unique rows "
          f"(duplicates by Idempotency-Key: {stats['duplicates']}); written to {out.relative_to(ROOT)}")
    print("top candidates received:")
    for row in rows[:5]:
        print(f"    rank {row['rank']:>3}  customer {row['customer_id']}  churn score {row['score']:.3f}")
    print("\nNothing was written to a predictions table in push mode. Inspect the delivery state with:")
    print(f"  {BIN.relative_to(ROOT)}/scoring deliveries promotions_daily --date {day} --all")
    print(f"and re-drive dead-lettered batches (none this time) with: scoring redrive promotions_daily --date {day}")
    return 0


def persist_demo(day: dt.date) -> int:
    db = prepare(day)
    rc, log, seconds = dags_test("churn_daily", day)

    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        run = conn.execute(sa.text(
            "SELECT run_id, status, model_version, rows_in, rows_quarantined, rows_scored, rows_written, "
            "stage_seconds, error FROM scoring_runs WHERE job_id = 'churn_daily' AND partition_date = :d "
            "ORDER BY started_at DESC LIMIT 1"), {"d": day}).mappings().first()
        count = conn.execute(sa.text("SELECT COUNT(*) FROM churn_predictions WHERE partition_date = :d"),
                             {"d": day}).scalar() if run else 0
    print()
    if failed(rc, run, log):
        return 1
    print(f"run {run['run_id']}: status {run['status']} in {seconds:.1f}s (model churn v{run['model_version']})")
    print(f"rows in {run['rows_in']}, quarantined {run['rows_quarantined']}, scored {run['rows_scored']}, "
          f"written {run['rows_written']}; churn_predictions holds {count} rows for {day}")
    print(f"stage seconds: {run['stage_seconds']}")
    reports = sorted((ROOT / "reports" / "churn_daily" / str(day)).glob("*.html"), key=lambda q: q.stat().st_mtime)
    if reports:
        print(f"validation report (open in a browser): {reports[-1].relative_to(ROOT)}")
    with engine.connect() as conn:
        drift = conn.execute(sa.text(
            "SELECT feature, value, drifted FROM scoring_drift WHERE job_id = 'churn_daily' AND partition_date = :d "
            "ORDER BY value DESC LIMIT 3"), {"d": day}).all()
    if drift:
        print("drift vs training (PSI, largest 3): " + ", ".join(
            f"{f} {v:.3f}{' DRIFTED' if d else ''}" for f, v, d in drift))
    with engine.connect() as conn:
        shadow = conn.execute(sa.text(
            "SELECT challenger_ref, challenger_version, status, rows_compared, agreement, mean_abs_diff, spearman, "
            "top_n, top_n_overlap, psi, error FROM scoring_shadow_comparisons WHERE job_id = 'churn_daily' "
            "AND partition_date = :d"), {"d": day}).mappings().all()
    for c in shadow:
        if c["status"] == "compared":
            print(f"challenger {c['challenger_ref']} (v{c['challenger_version']}) vs champion "
                  f"v{run['model_version']} on {c['rows_compared']} rows: agreement {c['agreement']:.3f}, mean "
                  f"|score diff| {c['mean_abs_diff']:.4f}, spearman {c['spearman']:.3f}, top-{c['top_n']} overlap "
                  f"{c['top_n_overlap']:.2f}, psi {c['psi']:.4f} (rows in churn_predictions_shadow; "
                  f"scoring models compare churn --date {day})")
        else:
            print(f"challenger {c['challenger_ref']}: FAILED ({c['error']}); the champion's run published")
    query = (f"SELECT customer_id, score, prediction, model_version FROM churn_predictions "
             f"WHERE partition_date = '{day}' ORDER BY score DESC LIMIT 10;")
    print("\nTop churn risks, paste into a SQL client:")
    print(f"  sqlite3 {db.relative_to(ROOT)} \"{query}\"")
    print(f"  (or: {BIN.relative_to(ROOT)}/python -c \"import sqlite3; "
          f"[print(r) for r in sqlite3.connect('{db.relative_to(ROOT)}').execute(\\\"{query}\\\")]\")")
    with engine.connect() as conn:
        for row in conn.execute(sa.text(query.rstrip(";"))):
            print("   ", tuple(row))
    print("\nThe push demo (promotions to a local webhook receiver): make demo-push")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

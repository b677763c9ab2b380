"""`make bench`: throughput and peak memory of the pipeline against a naive baseline.

Measures, on this machine, for partitions of 1M and 10M rows of the churn demo data
(15 inputs: 11 numeric, 4 categorical) persisted to the local PostgreSQL:

- end to end: ``run_partition`` (ingest, validate with Great Expectations, preprocess,
  score, persist with binary COPY through ADBC, finalize), wall time after the libraries are
  imported (the import is reported apart as start-up, as the naive child imports before its
  clock starts), and the child process's peak RSS;
- the stages' own sum: the per-stage seconds the same run recorded in its ledger row;
- naive: pandas ``read_parquet``, the same preprocessing, ``predict_proba`` and pandas
  ``to_sql`` (default settings) into PostgreSQL, 1M rows only;
- a re-run of the 1M partition (the day exists: on PostgreSQL the run swaps its day partition in);
- the floor, in the same run: the model's ``predict_proba`` alone on the same features (computed
  before the clock starts) and a raw binary COPY (ADBC) of the same prediction rows into an
  unindexed table. ``predict_proba`` is timed on the whole frame and in the job's own batches
  (``source.batch_rows``), both under the score stage's thread limit, and the faster is the floor's:
  the pipeline's batched score stage must not beat its floor. e2e / floor is printed beside e2e /
  naive, with a note beside any ratio below 1 (possible only where stages overlap or the floor's
  measurement was disturbed) saying whether the machine was busy. At 1M rows the ratio is the median
  of three rounds, each printed: the first measurements (end to end early in the run, the floor
  after the cascade and the sql source), then two rounds of end to end and floor back to back,
  each on a day not scored before. One pair moves by up to 20% with the machine's neighbours;
- a sql source (``source.kind: sql``): the 1M partition's rows loaded into a table and read by a
  query with the partition date bound, end to end, with its peak RSS;
- a cascade (``pipeline.demo.cascade``: a segment router and two segment churn models) over the
  1M partition, end to end, next to the single model;
- two 1M partitions scored at the same time by two processes on this machine, with every
  process predicting on all cores (no limit) and with one thread each (``SCORING_THREADS=1``,
  what a Celery worker of concurrency 2 on 2 cores gets by default);
- Airflow's overhead per task: ``airflow dags test`` of the 1M partition minus its stages.

Each measurement runs in its own process (clean peak RSS). Records the load averages at the start and
the end and whether the machine was busy (``BUSY_SHARE``). Prints a table and writes
``benchmarks/latest.json`` and a copy of it in ``benchmarks/history/`` (one file a run, named by its
``measured_at``). Data, model and Airflow home are cached in ``benchmarks/.work``.
A benchmark measures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("SCORING_BENCH_WORK", ROOT / "benchmarks" / ".work"))  # the smoke test's is its own
DAY = dt.date(2026, 11, 20)
CHUNK = 500_000
PG = os.environ.get("SCORING_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
SCHEMA = os.environ.get("SCORING_BENCH_SCHEMA", "scoring_bench")


def env() -> dict[str, str]:
    uri = f"{PG}?options=-csearch_path%3D{SCHEMA}"
    return dict(os.environ, SCORING_HOME=str(ROOT), SCORING_MODELS_DIR=str(WORK / "models"),
                SCORING_STAGING_DIR=str(WORK / "staging"), SCORING_REPORTS_DIR=str(WORK / "reports"),
                SCORING_JOBS_DIR=str(WORK / "jobs"), SCORING_DEADLETTER_DIR=str(WORK / "deadletter"),
                AIRFLOW_CONN_SCORING_DB=uri, PYTHONPATH=str(ROOT))


BATCH_ROWS = int(os.environ.get("SCORING_BENCH_BATCH_ROWS", 250_000))  # the jobs' source.batch_rows; the smoke test's is small
# rounds of (end to end, floor) at the smallest size (after the first, each pair back to back on a new day); e2e / floor
# there is the median of the rounds' ratios: one pair can move by 20% with the machine's neighbours
ROUNDS = 3


def job_id(rows: int) -> str:
    return f"bench_{rows // 1_000_000}m" if rows >= 1_000_000 else f"bench_{rows}"


def prepare(sizes: list[int]) -> None:
    """Demo model, one partition per size (chunks of 500k rows, unique keys), job files, a fresh schema."""
    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    import psycopg

    from pipeline.demo import data as demo_data
    from pipeline.demo.train import train_churn
    from pipeline.registry import Registry

    for name in ("jobs", "staging", "reports"):
        (WORK / name).mkdir(parents=True, exist_ok=True)
    with psycopg.connect(PG, autocommit=True) as conn:  # a fresh schema, where the model's anchor goes too
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
    registry = Registry(WORK / "models")
    small = {"days": 2, "n": 3000} if os.environ.get("SCORING_BENCH_SMALL_MODELS") else {}  # the smoke test's
    if not registry.versions("churn"):
        train_churn(registry, end=DAY - dt.timedelta(days=3), **small)
    else:
        registry.anchor("churn")  # the cached model, adopted into the fresh schema
    cascade_models = ("segments", "churn_frequent", "churn_occasional")
    if not all(registry.versions(m) for m in cascade_models):
        from pipeline.demo.cascade import train_cascade

        train_cascade(registry, end=DAY - dt.timedelta(days=3), **small)
    else:
        for name in cascade_models:
            registry.anchor(name)
    for rows in sizes:
        folder = WORK / "data" / job_id(rows) / f"date={DAY}"
        marker = folder / "_COMPLETE"
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            started = time.perf_counter()
            for i in range(-(-rows // CHUNK)):
                size = min(CHUNK, rows - i * CHUNK)
                frame = demo_data.customers(DAY, n=int(size / 0.98) + 50, seed=100 + i).head(size)
                frame[demo_data.KEY] += i * 100_000_000
                frame.to_parquet(folder / f"part-{i:04d}.parquet", index=False)
            marker.touch()
            print(f"generated {rows:,} rows in {time.perf_counter() - started:.0f}s", flush=True)
        if rows == min(sizes):  # more days of the same files: two partitions at once, the floor's rounds
            for offset in range(1, ROUNDS + 1):
                twin = WORK / "data" / job_id(rows) / f"date={DAY + dt.timedelta(days=offset)}"
                shutil.rmtree(twin, ignore_errors=True)
                shutil.copytree(folder, twin, copy_function=os.link)
        write_jobs(rows, folder, rows == min(sizes))


def write_jobs(rows: int, folder: Path, smallest: bool) -> None:
    """The bench's job files for a size; at the smallest, the cascade's and the sql source's too (its table)."""
    import yaml

    doc = {"job_id": job_id(rows), "schedule": None, "start_date": "2026-11-01", "entity_key": "customer_id",
           "source": {"path": str(WORK / "data" / job_id(rows)), "batch_rows": BATCH_ROWS},
           "model": {"name": "churn"}, "output": {"table": f"{job_id(rows)}_predictions"},
           "validation": {"max_quarantine_share": 0.05}}
    (WORK / "jobs" / f"{job_id(rows)}.yaml").write_text(yaml.safe_dump(doc))
    if smallest:
        cascade = {**doc, "job_id": "bench_cascade", "model": {"name": "segments"},
                   "cascade": {"routes": {"frequent": {"name": "churn_frequent"},
                                          "occasional": {"name": "churn_occasional"}}},
                   "output": {"table": "bench_cascade_predictions"}}
        (WORK / "jobs" / "bench_cascade.yaml").write_text(yaml.safe_dump(cascade))
        query = {**doc, "job_id": "bench_sql", "output": {"table": "bench_sql_predictions"},
                 "source": {"kind": "sql", "batch_rows": BATCH_ROWS,
                            "query": "SELECT * FROM bench_source_rows WHERE day = :partition_date"}}
        (WORK / "jobs" / "bench_sql.yaml").write_text(yaml.safe_dump(query))
        source_table(folder)


def source_table(folder: Path) -> None:
    """The partition's rows as a table (``bench_source_rows``, a ``day`` column first) for the sql source job."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow as pa
    import pyarrow.parquet as pq

    with adbc.connect(f"{PG}?options=-csearch_path%3D{SCHEMA}") as conn, conn.cursor() as cur:
        for i, path in enumerate(sorted(folder.glob("*.parquet"))):
            table = pq.read_table(path)
            table = table.add_column(0, "day", pa.repeat(pa.scalar(DAY, pa.date32()), table.num_rows))
            cur.adbc_ingest("bench_source_rows", table, mode="replace" if i == 0 else "append")
        conn.commit()


def child(kind: str, rows: int, day: dt.date = DAY) -> dict[str, Any]:
    """Runs inside a fresh process; returns the measurement."""
    sys.path.insert(0, str(ROOT))
    if kind in ("pipeline", "cascade", "sql"):
        started = time.perf_counter()
        from pipeline import ledger, local, run

        run.preload()  # the libraries the stages import (the naive child imports its own before timing too)
        job = run.find_job(job_id(rows) if kind == "pipeline" else f"bench_{kind}")
        run.engine(job)  # connect outside the timed section, like a warm worker
        imports = time.perf_counter() - started
        started = time.perf_counter()
        summary = local.run_partition(job, day, run_id=f"bench-{time.time_ns()}")
        wall = time.perf_counter() - started
        stages = ledger.as_json(summary["stage_seconds"])
        return {"wall_s": wall, "stages": stages, "rows": summary["rows_in"], "scored": summary["rows_scored"],
                "startup_s": imports}
    if kind == "naive":
        import pandas as pd
        import sqlalchemy as sa

        from pipeline import preprocess
        from pipeline.registry import Registry
        from pipeline.score import load_scorer
        from pipeline.store import engines

        registry = Registry()
        mv = registry.resolve("churn", "champion")
        scorer = load_scorer(registry, "churn", mv.version)
        engine = engines.for_connection("scoring_db")
        inputs = [c["name"] for c in mv.card["inputs"]]
        started = time.perf_counter()
        frame = pd.read_parquet(WORK / "data" / job_id(rows) / f"date={DAY}")
        features = preprocess.for_card(mv.card)(frame[inputs])
        _, score = scorer.predict(features)
        out = pd.DataFrame({"customer_id": frame["customer_id"], "score": score, "partition_date": DAY})
        out.to_sql("naive_predictions", engine, if_exists="replace", index=False)
        wall = time.perf_counter() - started
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM naive_predictions")).scalar() == len(frame)
        return {"wall_s": wall, "rows": len(frame)}
    if kind == "floor":
        return floor(rows)
    raise ValueError(kind)


def floor(rows: int) -> dict[str, Any]:
    """What the model and the database cost by themselves: ``predict_proba`` on features computed before the
    clock starts, and a binary COPY of the same prediction rows (the predictions table's columns) into a
    table without any index.

    ``predict_proba`` is timed twice, under the score stage's own thread limit (``score.limited_threads`` of
    the job's ``model.threads``): on the whole frame, and in slices of the job's ``source.batch_rows`` (the
    batches the score stage predicts on). The faster of the two is the floor's predict: a floor the
    pipeline's batched stage can beat is no floor."""
    import adbc_driver_postgresql.dbapi as adbc
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from pipeline import preprocess, run
    from pipeline.registry import Registry
    from pipeline.score import limited_threads, load_scorer
    from pipeline.store import engines

    registry = Registry()
    mv = registry.resolve("churn", "champion")
    scorer = load_scorer(registry, "churn", mv.version)  # its golden rows predicted: the model is warm
    job = run.find_job(job_id(rows))  # the pipeline's own batch size and thread setting
    batch_rows = job.source.batch_rows
    inputs = [c["name"] for c in mv.card["inputs"]]
    frame = pd.read_parquet(WORK / "data" / job_id(rows) / f"date={DAY}")
    features = preprocess.for_card(mv.card)(frame[inputs])
    n = len(frame)
    with limited_threads(job.model.threads) as threads:
        scorer.estimator.predict_proba(features.iloc[:batch_rows])  # untimed: the first call under the limit
        started = time.perf_counter()
        proba = scorer.estimator.predict_proba(features)
        whole_s = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, n, batch_rows):
            scorer.estimator.predict_proba(features.iloc[start:start + batch_rows])
        batched_s = time.perf_counter() - started
    predict_s, kind = min((whole_s, "whole"), (batched_s, "batched"))
    score = proba[:, 1]
    table = pa.table({
        "partition_date": pa.repeat(pa.scalar(DAY, pa.date32()), n), "customer_id": frame["customer_id"].to_numpy(),
        "prediction": pa.array(np.where(score >= 0.5, "1", "0")), "score": score,
        "model_name": pa.repeat(pa.scalar("churn"), n), "model_version": pa.repeat(pa.scalar(mv.version, pa.int32()), n),
        "run_id": pa.repeat(pa.scalar("floor"), n),
        "scored_at": pa.repeat(pa.scalar(dt.datetime(2026, 11, 21), pa.timestamp("us")), n),
        "flags": pa.nulls(n, pa.string())})
    engine = engines.for_connection("scoring_db")
    with adbc.connect(engines.libpq_uri(engine)) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS floor_predictions")
        cur.execute("CREATE TABLE floor_predictions (partition_date DATE NOT NULL, customer_id BIGINT NOT NULL, "
                    "prediction TEXT NOT NULL, score DOUBLE PRECISION, model_name TEXT NOT NULL, model_version "
                    "INTEGER NOT NULL, run_id TEXT NOT NULL, scored_at TIMESTAMPTZ NOT NULL, flags TEXT)")
        conn.commit()
        started = time.perf_counter()
        cur.adbc_ingest("floor_predictions", table, mode="append")
        conn.commit()
        copy_s = time.perf_counter() - started
        cur.execute("DROP TABLE floor_predictions")
        conn.commit()
    return {"predict_s": predict_s, "copy_s": copy_s, "floor_s": predict_s + copy_s, "rows": n,
            "floor_predict_whole_s": whole_s, "floor_predict_batched_s": batched_s, "floor_predict_s": predict_s,
            "floor_predict_kind": kind, "floor_batch_rows": batch_rows, "floor_batches": -(-n // batch_rows),
            "floor_threads": threads}


def checkpoint() -> None:
    """PostgreSQL CHECKPOINT (the local server's superuser): a big load's WAL would otherwise be flushed
    during the next measurement. Skipped with a note where the role may not."""
    import psycopg

    try:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        print(f"(no CHECKPOINT before the measurement: {str(exc).splitlines()[0]})", flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). ru_maxrss is not used: on Linux it carries the forking parent's peak."""
    try:
        return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The machine counts as busy when, with C its cores (os.cpu_count(); load averages are the machine's):
# - the 1-minute load average at the bench's start exceeds BUSY_SHARE x C (others' work before it starts), or
# - other processes used more than BUSY_SHARE x C cores on average during the bench: the machine's busy CPU
#   time (/proc/stat) minus this process's and its children's (getrusage), over the bench's wall time.
# The load average at the end is recorded, not judged: its last minute counts the bench's own processes (one
# predicting on every core alone makes it about C). The local PostgreSQL server's work for the bench counts
# as others' (it is not a child of the bench), a small share of a run.
BUSY_SHARE = 0.5
FLOOR_KEYS = ("floor_predict_whole_s", "floor_predict_batched_s", "floor_predict_s", "floor_predict_kind",
              "floor_batch_rows", "floor_threads")


def busy_rule(cores: int) -> str:
    limit = BUSY_SHARE * cores
    return (f"busy if the 1-minute load average at the start > {BUSY_SHARE} x {cores} cores = {limit:g}, or other "
            f"processes used > {limit:g} cores on average during the bench (/proc/stat busy CPU minus the bench's "
            "own processes'); the load average at the end is recorded, not judged: it counts the bench itself")


def snapshot() -> dict[str, Any]:
    """The machine's load averages, its busy CPU seconds since boot (None where /proc/stat is not there),
    this process's and its children's CPU seconds, and the clock."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        # user, nice, system + irq, softirq, steal: not idle or iowait (guest time is already in user)
        machine: float | None = (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        machine = None
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    return {"load": [round(v, 2) for v in os.getloadavg()], "machine_cpu_s": machine, "own_cpu_s": own,
            "at": time.perf_counter()}


def machine_load(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The summary's load keys: the load averages at the start and the end, other processes' CPU during the
    bench (in cores) and whether the machine was busy (``busy_rule``)."""
    cores = os.cpu_count() or 1
    others = None
    if before["machine_cpu_s"] is not None and after["machine_cpu_s"] is not None:
        used = (after["machine_cpu_s"] - before["machine_cpu_s"]) - (after["own_cpu_s"] - before["own_cpu_s"])
        others = round(max(used, 0.0) / max(after["at"] - before["at"], 1e-9), 2)
    busy = before["load"][0] > BUSY_SHARE * cores or (others is not None and others > BUSY_SHARE * cores)
    return {"load_avg_before": before["load"], "load_avg_after": after["load"], "others_cpu_cores": others,
            "machine_busy": busy, "busy_rule": busy_rule(cores)}


def git_commit() -> tuple[str | None, bool | None]:
    """``git rev-parse --short HEAD`` and whether tracked files differ from it; (None, None) without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=30)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None, None
    if head.returncode != 0:
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def concurrent(rows: int, threads: int) -> dict[str, Any]:
    """Two partitions (two days of the same rows) run at once by two processes, each predicting with
    ``threads`` threads: each one's end to end and score stage."""
    import contextlib
    import tempfile

    checkpoint()
    days = [DAY, DAY + dt.timedelta(days=1)]
    results = []
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in days]  # not pipes: a full one stalls
        procs = [subprocess.Popen([sys.executable, __file__, "--child", "pipeline", "--rows", str(rows), "--day",
                                   day.isoformat()], env=dict(env(), SCORING_THREADS=str(threads)), stdout=log,
                                  stderr=subprocess.STDOUT, text=True) for day, log in zip(days, logs, strict=True)]
        for proc, log in zip(procs, logs, strict=True):
            proc.wait()
            log.seek(0)
            out = log.read()
            if proc.returncode != 0:
                raise SystemExit(f"concurrent run ({threads} threads) failed:\n{out[-4000:]}")
            results.append(json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1][7:]))
    return {"threads": threads, "wall_s": max(r["wall_s"] for r in results),
            "score_s": max(r["stages"]["score"] for r in results), "runs": results}


def measure(kind: str, rows: int, day: dt.date = DAY) -> dict[str, Any]:
    checkpoint()  # each measurement starts with the WAL of the one before written out
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--rows", str(rows), "--day", day.isoformat()],
                         env=env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} {rows:,} failed:\n{out.stderr[-4000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def floor_rounds(results: dict[str, Any], rows: int, count: int = ROUNDS) -> list[dict[str, Any]]:
    """End to end and the floor, back to back, ``count`` times at ``rows`` (the first round is the first
    measurement's pair); each later round scores a day not scored before, as the first one did."""
    def pair(wall: float, fl: dict[str, Any]) -> dict[str, Any]:
        return {"wall_s": wall, "floor_s": fl["floor_s"],
                **{k: fl[k] for k in ("floor_predict_whole_s", "floor_predict_batched_s", "floor_predict_kind")}}

    rounds = [pair(results[f"pipeline_{rows}"]["wall_s"], results[f"floor_{rows}"])]
    for offset in range(2, count + 1):  # DAY + 1 is the second partition of the concurrent measurement
        print(f"round {offset} of {count}: end to end and floor, {rows:,} rows ...", flush=True)
        wall = measure("pipeline", rows, DAY + dt.timedelta(days=offset))["wall_s"]
        rounds.append(pair(wall, measure("floor", rows)))
    for r in rounds:
        r["ratio"] = r["wall_s"] / r["floor_s"]
    return rounds


def airflow_overhead(rows: int) -> dict[str, Any]:
    """`airflow dags test` wall time of a partition minus the stages' own seconds, per task."""
    home = WORK / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    e = dict(env(), AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
             AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__UNIT_TEST_MODE="False")
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], env=e, capture_output=True, check=True)
    started = time.perf_counter()
    out = subprocess.run([airflow, "dags", "test", job_id(rows), DAY.isoformat()], env=e, capture_output=True,
                         text=True)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"airflow dags test failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    sys.path.insert(0, str(ROOT))
    os.environ.update(env())
    import sqlalchemy as sa

    from pipeline import ledger
    from pipeline.store import engines

    with engines.for_connection("scoring_db").connect() as conn:
        stages = ledger.as_json(conn.execute(sa.text(
            "SELECT stage_seconds FROM scoring_runs WHERE job_id = :j AND run_id LIKE 'manual__%' "
            "ORDER BY started_at DESC LIMIT 1"), {"j": job_id(rows)}).scalar_one())
    tasks = 8  # wait_for_partition, ingest, validate, preprocess, score, persist, finalize (+ the DAG run)
    return {"wall_s": wall, "stage_sum_s": sum(stages.values()),
            "overhead_per_task_s": (wall - sum(stages.values())) / tasks}


def parse_args() -> argparse.Namespace:
    """The bench's options (``--child`` runs one measurement in this process)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child")
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--no-airflow", action="store_true", help="skip the Airflow overhead measurement")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "latest.json"))
    parser.add_argument("--day", type=dt.date.fromisoformat, default=DAY)
    parser.add_argument("--rounds", type=int, choices=range(1, ROUNDS + 1), default=ROUNDS,
                        help=f"rounds of end to end and floor at the smallest size (default {ROUNDS}; fewer for a smoke run)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.child:
        result = child(args.child, args.rows[0], args.day)
        result["peak_rss_mb"] = peak_rss_mb()
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    before = snapshot()  # the bench's start: what the machine was doing before it
    commit, dirty = git_commit()
    sizes = sorted(args.rows)
    prepare(sizes)
    results = measure_all(sizes, args.rounds, airflow=not args.no_airflow)
    load = machine_load(before, snapshot())
    lines = table_lines(results, sizes)
    summary, ratios = summarize(results, sizes, load, commit, dirty)
    lines.extend(verdict_lines(results, sizes, summary, ratios, load))
    print("\n".join(lines))
    write(summary, Path(args.out))
    return 0


def measure_all(sizes: list[int], rounds: int, airflow: bool) -> dict[str, Any]:
    """Every measurement, each in its own process, in the order the docstring gives."""
    results: dict[str, Any] = {}
    small = sizes[0]
    for rows in sizes:
        print(f"pipeline, {rows:,} rows ...", flush=True)
        results[f"pipeline_{rows}"] = measure("pipeline", rows)
        if rows == small:  # the re-run right after its first load: both start from the same database state
            print(f"re-run of the {small:,}-row partition ...", flush=True)
            results["rerun"] = measure("pipeline", small)
    print(f"cascade (router + 2 routes), {small:,} rows ...", flush=True)
    results["cascade"] = measure("cascade", small)
    print(f"sql source (a query on PostgreSQL), {small:,} rows ...", flush=True)
    results["sql"] = measure("sql", small)
    for rows in sizes:
        print(f"floor (predict_proba alone, COPY alone), {rows:,} rows ...", flush=True)
        results[f"floor_{rows}"] = measure("floor", rows)
    results["floor"] = results[f"floor_{small}"]
    results["rounds"] = floor_rounds(results, small, rounds)
    cores = os.cpu_count() or 1
    for threads in sorted({cores, 1}, reverse=True):
        print(f"two {small:,}-row partitions at once, {threads} thread(s) each ...", flush=True)
        results[f"concurrent_{threads}"] = concurrent(small, threads)
    print(f"naive baseline, {small:,} rows ...", flush=True)
    results["naive"] = measure("naive", small)
    if airflow:
        print(f"airflow dags test, {small:,} rows ...", flush=True)
        results["airflow"] = airflow_overhead(small)
    return results


def rate(rows: int, seconds: float) -> float:
    """Rows per second (0 for no time)."""
    return rows / seconds if seconds else 0.0


def table_lines(results: dict[str, Any], sizes: list[int]) -> list[str]:
    """The printed table: one line a measurement."""
    small = sizes[0]
    lines = [f"{'measure':<34}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>13}"]
    lines.extend(pipeline_lines(results, sizes))
    rerun = results["rerun"]
    lines.append(f"{'re-run (the day exists)':<34}{small:>12,}{rerun['wall_s']:>10.2f}"
                 f"{rate(small, rerun['wall_s']):>12,.0f}{rerun['peak_rss_mb']:>13,.0f}")
    lines.append(f"  {'persist of the re-run':<32}{small:>12,}{rerun['stages']['persist']:>10.2f}"
                 f"{rate(small, rerun['stages']['persist']):>12,.0f}")
    casc = results["cascade"]
    lines.append(f"{'cascade (router + 2 routes)':<34}{casc['rows']:>12,}{casc['wall_s']:>10.2f}"
                 f"{rate(casc['rows'], casc['wall_s']):>12,.0f}{casc['peak_rss_mb']:>13,.0f}")
    lines.append(f"  {'score stage (router and routes)':<32}{casc['rows']:>12,}{casc['stages']['score']:>10.2f}")
    query = results["sql"]
    lines.append(f"{'sql source (query, same rows)':<34}{query['rows']:>12,}{query['wall_s']:>10.2f}"
                 f"{rate(query['rows'], query['wall_s']):>12,.0f}{query['peak_rss_mb']:>13,.0f}")
    lines.append(f"  {'ingest stage (the query)':<32}{query['rows']:>12,}{query['stages']['ingest']:>10.2f}"
                 f"{rate(query['rows'], query['stages']['ingest']):>12,.0f}")
    lines.extend(floor_lines(results, sizes))
    for key in sorted(k for k in results if k.startswith("concurrent_")):
        c = results[key]
        label = f"2 partitions at once, {c['threads']} thr"
        lines.append(f"{label:<34}{2 * small:>12,}{c['wall_s']:>10.2f}{rate(2 * small, c['wall_s']):>12,.0f}")
        lines.append(f"  {'score stage (slower of the two)':<32}{small:>12,}{c['score_s']:>10.2f}")
    naive = results["naive"]
    lines.append(f"{'naive (read, predict, to_sql)':<34}{naive['rows']:>12,}{naive['wall_s']:>10.2f}"
                 f"{rate(naive['rows'], naive['wall_s']):>12,.0f}{naive['peak_rss_mb']:>13,.0f}")
    return lines


def pipeline_lines(results: dict[str, Any], sizes: list[int]) -> list[str]:
    """The table's lines of the end-to-end runs: their stages, their sum, the whole."""
    lines = []
    for rows in sizes:
        r = results[f"pipeline_{rows}"]
        for stage, seconds in sorted(r["stages"].items(), key=lambda kv: list(STAGES).index(kv[0])):
            shown = f"{rate(rows, seconds):>12,.0f}" if seconds >= 0.05 else f"{'':>12}"  # no rate of a blink
            lines.append(f"  {stage:<32}{rows:>12,}{seconds:>10.2f}{shown}")
        stage_sum = sum(r["stages"].values())
        lines.append(f"{'stages, sum':<34}{rows:>12,}{stage_sum:>10.2f}{rate(rows, stage_sum):>12,.0f}")
        lines.append(f"{'end to end (run_partition)':<34}{rows:>12,}{r['wall_s']:>10.2f}"
                     f"{rate(rows, r['wall_s']):>12,.0f}{r['peak_rss_mb']:>13,.0f}")
        lines.append(f"  {'(start-up imports, once)':<32}{'':>12}{r.get('startup_s', 0):>10.2f}")
    return lines


def floor_lines(results: dict[str, Any], sizes: list[int]) -> list[str]:
    """The table's lines of the floor: predict alone (whole, batched), COPY alone, both."""
    lines = []
    for rows in sizes:
        f = results[f"floor_{rows}"]
        lines.append(f"{'floor: predict_proba (the faster)':<34}{f['rows']:>12,}{f['predict_s']:>10.2f}"
                     f"{rate(f['rows'], f['predict_s']):>12,.0f}")
        for label, seconds in ((f"whole frame, {f['floor_threads']} thr", f["floor_predict_whole_s"]),
                               (f"batches of {f['floor_batch_rows']:,}, {f['floor_threads']} thr",
                                f["floor_predict_batched_s"])):
            lines.append(f"  {label:<32}{f['rows']:>12,}{seconds:>10.2f}{rate(f['rows'], seconds):>12,.0f}")
        lines.append(f"{'floor: binary COPY, no index':<34}{f['rows']:>12,}{f['copy_s']:>10.2f}"
                     f"{rate(f['rows'], f['copy_s']):>12,.0f}")
        lines.append(f"{'floor (predict + COPY)':<34}{f['rows']:>12,}{f['floor_s']:>10.2f}"
                     f"{rate(f['rows'], f['floor_s']):>12,.0f}{f['peak_rss_mb']:>13,.0f}")
    return lines


def summarize(results: dict[str, Any], sizes: list[int], load: dict[str, Any], commit: str | None,
              dirty: bool | None) -> tuple[dict[str, Any], dict[int, float]]:
    """benchmarks/latest.json's content, and the end to end / floor ratio by size."""
    small = sizes[0]
    rerun, fl, casc, query, naive = (results[k] for k in ("rerun", "floor", "cascade", "sql", "naive"))
    first = results[f"pipeline_{small}"]
    ratios = {rows: results[f"pipeline_{rows}"]["wall_s"] / results[f"floor_{rows}"]["floor_s"] for rows in sizes}
    ratios[small] = statistics.median(r["ratio"] for r in results["rounds"])
    e2e = rate(small, first["wall_s"])
    stage_sum_rate = rate(small, sum(first["stages"].values()))
    naive_rate = rate(naive["rows"], naive["wall_s"])
    largest = results[f"pipeline_{sizes[-1]}"]
    summary = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                   f"Python {platform.python_version()}",
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": small,
        "e2e_rows_per_s": round(e2e),
        "stage_sum_rows_per_s": round(stage_sum_rate),
        "naive_rows_per_s": round(naive_rate),
        "e2e_vs_stage_sum": round(e2e / stage_sum_rate, 3),
        "e2e_vs_naive": round(e2e / naive_rate, 2),
        "e2e_vs_floor": round(ratios[small], 2),
        "e2e_vs_floor_by_rows": {rows: round(ratio, 2) for rows, ratio in ratios.items()},
        "e2e_vs_floor_rounds": [round(r["ratio"], 2) for r in results["rounds"]],
        "concurrent_score_s_by_threads": {results[k]["threads"]: round(results[k]["score_s"], 2)
                                          for k in results if k.startswith("concurrent_")},
        "cascade_rows_per_s": round(rate(casc["rows"], casc["wall_s"])),
        "sql_source_rows_per_s": round(rate(query["rows"], query["wall_s"])),
        "sql_source_peak_rss_mb": round(query["peak_rss_mb"]),
        "floor_s": round(fl["floor_s"], 2),
        **{k: round(fl[k], 3) if isinstance(fl[k], float) else fl[k] for k in FLOOR_KEYS},
        **load,
        "commit": commit,
        "commit_dirty": dirty,
        "rerun_persist_vs_first": round(rerun["stages"]["persist"] / first["stages"]["persist"], 2),
        f"peak_rss_mb_{sizes[-1] // 1_000_000}m": round(largest["peak_rss_mb"]),
        "peak_rss_mb_10m": round(results.get("pipeline_10000000", largest)["peak_rss_mb"]),
        "results": results,
    }
    if "airflow" in results:
        summary["airflow_overhead_per_task_s"] = round(results["airflow"]["overhead_per_task_s"], 2)
    return summary, ratios


def verdict_lines(results: dict[str, Any], sizes: list[int], summary: dict[str, Any], ratios: dict[int, float],
                  load: dict[str, Any]) -> list[str]:
    """The printed lines after the table: each ratio against its target, the machine's load."""
    small = sizes[0]
    rerun, first, largest = results["rerun"], results[f"pipeline_{small}"], results[f"pipeline_{sizes[-1]}"]
    lines = [""]
    lines.append(f"end to end / stages' sum: {summary['e2e_vs_stage_sum']:.0%} (target >= 80%)")
    lines.append(f"end to end / naive:       {summary['e2e_vs_naive']:.1f}x (target >= 5x)")
    for rows in sizes:
        f = results[f"floor_{rows}"]
        each = (f"median of {len(results['rounds'])} rounds: " + ", ".join(
            f"{r['wall_s']:.2f}s / {r['floor_s']:.2f}s = {r['ratio']:.2f}" for r in results["rounds"]) + "; "
            if rows == small else "one round; ")
        lines.append(f"end to end / floor, {rows:,} rows: {ratios[rows]:.2f} ({each}target <= 1.5; "
                     f"floor {f['floor_s']:.2f}s: predict {f['predict_s']:.2f}s ({f['floor_predict_kind']}; whole "
                     f"frame {f['floor_predict_whole_s']:.2f}s, batches of {f['floor_batch_rows']:,} "
                     f"{f['floor_predict_batched_s']:.2f}s) + COPY {f['copy_s']:.2f}s)")
        if ratios[rows] < 1 or (rows == small and any(r["ratio"] < 1 for r in results["rounds"])):
            lines.append("  note: a ratio below 1.0, end to end faster than its floor, can only happen where stages "
                         "overlap (run_partition runs them one after the other) or where the floor's measurement was "
                         f"disturbed; the machine was {'busy' if load['machine_busy'] else 'not busy'} "
                         f"({load_text(load)})")
    lines.extend(excess_over_floor(results, sizes))
    lines.append(f"re-run persist / first:   {summary['rerun_persist_vs_first']:.2f} "
                 f"({rerun['stages']['persist']:.2f}s vs {first['stages']['persist']:.2f}s; target <= 1.2)")
    lines.append(f"peak RSS at {sizes[-1]:,} rows: {largest['peak_rss_mb']:,.0f} MB (target < 1,500 MB)")
    if "airflow" in results:
        a = results["airflow"]
        lines.append(f"airflow dags test: {a['wall_s']:.1f}s for {a['stage_sum_s']:.1f}s of stages: "
                     f"about {a['overhead_per_task_s']:.2f}s of Airflow per task")
    lines.append(f"machine: {'busy' if load['machine_busy'] else 'not busy'}, {load_text(load)}")
    return lines


def write(summary: dict[str, Any], out: Path) -> None:
    """benchmarks/latest.json and its copy in benchmarks/history/."""
    text = json.dumps(summary, indent=2) + "\n"
    out.write_text(text)
    history = out.parent / "history"  # a copy of each run, one file a run
    history.mkdir(exist_ok=True)
    copy = history / f"{summary['measured_at'].replace(':', '-')}.json"
    copy.write_text(text)
    print(f"\nwrote {out} and {copy}")


def load_text(load: dict[str, Any]) -> str:
    """The load averages at the start and the end and others' CPU during the bench, for the printed lines."""
    others = "unknown" if load["others_cpu_cores"] is None else f"{load['others_cpu_cores']:.2f}"
    return (f"load average (1, 5, 15 min) {', '.join(f'{v:.2f}' for v in load['load_avg_before'])} at the start, "
            f"{', '.join(f'{v:.2f}' for v in load['load_avg_after'])} at the end; other processes' CPU during the "
            f"bench {others} of {os.cpu_count() or 1} cores")


def excess_over_floor(results: dict[str, Any], sizes: list[int]) -> list[str]:
    """Where end to end spends beyond the floor: score minus predict, persist minus COPY, the other stages."""
    lines = []
    for rows in sizes:
        stages, f = results[f"pipeline_{rows}"]["stages"], results[f"floor_{rows}"]
        parts = {"score - predict": stages["score"] - f["predict_s"], "persist - COPY": stages["persist"] - f["copy_s"],
                 **{k: v for k, v in stages.items() if k not in ("score", "persist")}}
        lines.append(f"  beyond the floor, {rows:,} rows: " + ", ".join(
            f"{k} {v:.2f}s" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    return lines


STAGES = ("ingest", "validate", "preprocess", "score", "drift_gate", "persist", "push", "finalize")

if __name__ == "__main__":
    raise SystemExit(main())

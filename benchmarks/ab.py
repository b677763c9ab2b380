"""`make bench`, A/B part: what a split costs, in one run.

Sets up a scoring home in the bench's work dir (``SCORING_BENCH_WORK``/ab: two versions of the demo churn
model, the second trained with another seed, anchored in the bench's schema; one partition of ``ROWS`` demo
rows) and measures, on this machine:

- the arm assignment alone (``kernels.arms.assign``): 1M integer keys and 1M zero-padded text keys, a 10%
  split, seconds and keys per second (the hash is BLAKE2b per key, in Python);
- three runs of the same partition into the local PostgreSQL, each in its own process after the libraries
  are imported: the champion alone; the champion with the other version in the shadow (``model.challengers``);
  and a 10% split to the other version (``model.split``: the other version scores every row in the shadow,
  then ``steps.ARMS`` assigns the arms and rewrites the run's rows). Wall seconds, the ledger's per-stage
  seconds and the score step's parts (``part_seconds``: shadow, arms), and the split's cost over the shadow run
  and over the champion alone.

Records the machine's load (bench.py's rule: busy or not). Prints a table and writes ``benchmarks/ab.json``
and a copy in ``benchmarks/history/ab/`` (beside ``--out``). Everything talks to 127.0.0.1. A benchmark measures; nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench

ROOT = bench.ROOT
WORK = bench.WORK / "ab"
DAY = bench.DAY
ROWS = int(os.environ.get("SCORING_BENCH_AB_ROWS", 500_000))
KEYS = int(os.environ.get("SCORING_BENCH_AB_KEYS", 1_000_000))
SHARE = 10  # percent of the traffic the split gives the other version
KINDS = ("champion", "shadow", "split")


def env() -> dict[str, str]:
    base = bench.env()
    return dict(base, SCORING_MODELS_DIR=str(WORK / "models"), SCORING_STAGING_DIR=str(WORK / "staging"),
                SCORING_REPORTS_DIR=str(WORK / "reports"), SCORING_JOBS_DIR=str(WORK / "jobs"),
                SCORING_DEADLETTER_DIR=str(WORK / "deadletter"))


def prepare() -> None:
    """Two versions of the demo model (anchored in a fresh bench schema), one partition, three job files."""
    os.environ.update(env())
    sys.path.insert(0, str(ROOT))
    import psycopg
    import yaml

    from pipeline.demo import data as demo_data
    from pipeline.demo.train import train_churn
    from pipeline.registry import Registry

    for name in ("jobs", "staging", "reports"):
        (WORK / name).mkdir(parents=True, exist_ok=True)
    with psycopg.connect(bench.PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {bench.SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {bench.SCHEMA}")
    registry = Registry(WORK / "models")
    small = {"days": 2, "n": 3000} if os.environ.get("SCORING_BENCH_SMALL_MODELS") else {}
    if len(registry.versions("churn")) < 2:
        train_churn(registry, end=DAY - dt.timedelta(days=3), **small)
        train_churn(registry, end=DAY - dt.timedelta(days=3), seed=11, alias="challenger", **small)
    else:
        registry.anchor("churn")
    folder = WORK / "data" / f"date={DAY}"
    if not (folder / "_COMPLETE").exists():
        folder.mkdir(parents=True, exist_ok=True)
        demo_data.customers(DAY, n=int(ROWS / 0.98) + 50, seed=5).head(ROWS).to_parquet(
            folder / "part-0000.parquet", index=False)
        (folder / "_COMPLETE").touch()
    base = {"schedule": None, "start_date": "2026-11-01", "entity_key": "customer_id",
            "source": {"path": str(WORK / "data"), "batch_rows": bench.BATCH_ROWS},
            "validation": {"max_quarantine_share": 0.05}}
    models = {"champion": {"name": "churn"}, "shadow": {"name": "churn", "challengers": ["challenger"]},
              "split": {"name": "churn", "split": {"challenger": SHARE}}}
    for kind, model in models.items():
        doc = {**base, "job_id": f"bench_ab_{kind}", "model": model, "output": {"table": f"bench_ab_{kind}"}}
        (WORK / "jobs" / f"bench_ab_{kind}.yaml").write_text(yaml.safe_dump(doc))


def assignment() -> dict[str, Any]:
    """``kernels.arms.assign`` over KEYS integer keys and KEYS zero-padded text keys (a 10% split)."""
    import numpy as np

    from pipeline.kernels import arms

    out: dict[str, Any] = {"keys": KEYS, "share_percent": SHARE}
    for name, keys in (("integer", list(range(KEYS))), ("text", [f"{i:010d}" for i in range(KEYS)])):
        started = time.perf_counter()
        assigned = arms.assign(keys, "bench", [("challenger", SHARE * 100)])
        seconds = time.perf_counter() - started
        out[name] = {"seconds": seconds, "keys_per_s": KEYS / seconds,
                     "arm_share": float(np.mean(assigned == "challenger"))}
    return out


def child(kind: str) -> dict[str, Any]:
    """One run of the partition by the job of ``kind``, in this fresh process."""
    sys.path.insert(0, str(ROOT))
    if kind == "assignment":
        return assignment()
    from pipeline import ledger, local, run

    run.preload()
    job = run.find_job(f"bench_ab_{kind}")
    run.engine(job)
    started = time.perf_counter()
    summary = local.run_partition(job, DAY, run_id=f"bench-ab-{time.time_ns()}")
    wall = time.perf_counter() - started
    return {"wall_s": wall, "rows": summary["rows_in"], "scored": summary["rows_scored"],
            "stages": ledger.as_json(summary["stage_seconds"]),
            "parts": ledger.as_json(summary.get("part_seconds")) or {},
            "arms": ledger.as_json(summary.get("arms"))}


def measure(kind: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", kind], env=env(), capture_output=True, text=True,
                          timeout=3600, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"the {kind} measurement failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "ab.json"))
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child)), flush=True)
        return 0
    before = bench.snapshot()
    prepare()
    results: dict[str, Any] = {"assignment": measure("assignment")}
    for kind in KINDS:
        bench.checkpoint()
        results[kind] = measure(kind)
    after = bench.snapshot()
    load = bench.machine_load(before, after)
    commit, dirty = bench.git_commit()
    split, shadow, alone = (results[k]["wall_s"] for k in ("split", "shadow", "champion"))
    summary = {"measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "commit": commit,
               "dirty": dirty, "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
               "load": load, "rows": ROWS, "share_percent": SHARE, "results": results,
               "split_over_shadow": split / shadow, "split_over_champion": split / alone}
    print(f"A/B bench on {os.cpu_count()} cores ({bench.load_text(load)}):")
    for name in ("integer", "text"):
        a = results["assignment"][name]
        print(f"  arm assignment, {KEYS:,} {name} keys: {a['seconds']:.2f} s ({a['keys_per_s']:,.0f} keys/s), "
              f"arm share {a['arm_share']:.4f}")
    for kind in KINDS:
        r = results[kind]
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in sorted((r.get("parts") or {}).items()))
        print(f"  {kind:9s} {r['rows']:,} rows: {r['wall_s']:.1f} s" + (f" (parts: {parts})" if parts else ""))
    print(f"  split / shadow {summary['split_over_shadow']:.2f}, split / champion {summary['split_over_champion']:.2f}")
    out = Path(args.out)
    text = json.dumps(summary, indent=2) + "\n"
    out.write_text(text)
    history = out.parent / "history" / "ab"
    history.mkdir(parents=True, exist_ok=True)
    (history / f"{summary['measured_at'].replace(':', '-')}.json").write_text(text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

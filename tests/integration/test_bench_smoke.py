"""`make bench` keeps working: the same script on tiny partitions (it measures; nothing here checks a time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_the_bench_runs_end_to_end_and_reports_the_floor_and_the_rerun(
        tmp_path: Path, pg_server: str, trained_models: Path, cascade_models: Path) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    for registry in (trained_models, cascade_models):  # the session's models: the bench adopts them
        shutil.copytree(registry, tmp_path / "work" / "models", dirs_exist_ok=True)
    out = tmp_path / "latest.json"
    env = dict(os.environ, SCORING_BENCH_WORK=str(tmp_path / "work"), SCORING_BENCH_SCHEMA=schema,
               SCORING_BENCH_PG=pg_server, SCORING_BENCH_SMALL_MODELS="1")
    try:
        done = subprocess.run([sys.executable, "benchmarks/bench.py", "--rows", "3000", "--no-airflow",
                               "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads(out.read_text())
        for key in ("e2e_vs_naive", "e2e_vs_floor", "floor_s", "rerun_persist_vs_first", "peak_rss_mb_10m",
                    "cascade_rows_per_s", "sql_source_rows_per_s", "sql_source_peak_rss_mb"):
            assert summary[key] > 0, key
        assert "end to end / floor, 3,000 rows:" in done.stdout and "re-run persist / first:" in done.stdout
        assert "beyond the floor, 3,000 rows:" in done.stdout and "2 partitions at once, 1 thr" in done.stdout
        assert summary["concurrent_score_s_by_threads"]["1"] > 0 and "sql source (query, same rows)" in done.stdout
        assert summary["results"]["sql"]["rows"] == summary["results"]["pipeline_3000"]["rows"]
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

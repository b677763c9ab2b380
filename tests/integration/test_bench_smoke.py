"""`make bench` keeps working: the same script on tiny partitions (it measures; nothing here checks a time)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.conftest import ROOT

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FLOOR_KEYS = ("floor_predict_whole_s", "floor_predict_batched_s", "floor_predict_s", "floor_predict_kind",
              "floor_batch_rows")


def test_the_bench_runs_end_to_end_and_reports_the_floor_and_the_rerun(
        tmp_path: Path, pg_server: str, trained_models: Path, cascade_models: Path) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    for registry in (trained_models, cascade_models):  # the session's models: the bench adopts them
        shutil.copytree(registry, tmp_path / "work" / "models", dirs_exist_ok=True)
    out = tmp_path / "latest.json"
    env = dict(os.environ, SCORING_BENCH_WORK=str(tmp_path / "work"), SCORING_BENCH_SCHEMA=schema,
               SCORING_BENCH_PG=pg_server, SCORING_BENCH_SMALL_MODELS="1",
               SCORING_BENCH_BATCH_ROWS="1000")  # 3 batches of the 3,000 rows: the floor's batched predict loops
    try:
        done = subprocess.run([sys.executable, "benchmarks/bench.py", "--rows", "3000", "--no-airflow",
                               "--rounds", "2", "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads(out.read_text())
        for key in ("e2e_vs_naive", "e2e_vs_floor", "floor_s", "rerun_persist_vs_first", "peak_rss_mb_10m",
                    "cascade_rows_per_s", "sql_source_rows_per_s", "sql_source_peak_rss_mb"):
            assert summary[key] > 0, key
        assert "end to end / floor, 3,000 rows:" in done.stdout and "re-run persist / first:" in done.stdout
        assert "beyond the floor, 3,000 rows:" in done.stdout and "2 partitions at once, 1 thr" in done.stdout
        assert summary["concurrent_score_s_by_threads"]["1"] > 0 and "sql source (query, same rows)" in done.stdout
        assert summary["results"]["sql"]["rows"] == summary["results"]["pipeline_3000"]["rows"]

        # the floor's predict: the faster of the whole frame and the pipeline's own batches, and the floor uses it
        job = yaml.safe_load((tmp_path / "work" / "jobs" / "bench_3000.yaml").read_text())
        floor = summary["results"]["floor_3000"]
        assert summary["results"]["floor"] == floor
        for source in (summary, floor):
            assert all(key in source for key in FLOOR_KEYS), [k for k in FLOOR_KEYS if k not in source]
            assert source["floor_batch_rows"] == job["source"]["batch_rows"] == 1000
            assert source["floor_predict_s"] == min(source["floor_predict_whole_s"], source["floor_predict_batched_s"])
            assert source["floor_predict_kind"] == (
                "whole" if source["floor_predict_whole_s"] < source["floor_predict_batched_s"] else "batched")
        assert floor["floor_batches"] == 3 and floor["floor_threads"] >= 1
        assert floor["predict_s"] == floor["floor_predict_s"]
        assert floor["floor_s"] == pytest.approx(floor["floor_predict_s"] + floor["copy_s"])
        assert summary["floor_s"] == round(floor["floor_s"], 2)
        assert summary["floor_predict_s"] == round(floor["floor_predict_s"], 3)
        assert all(r["floor_predict_kind"] in ("whole", "batched") for r in summary["results"]["rounds"])

        # the machine's load, and the commit measured
        assert len(summary["load_avg_before"]) == len(summary["load_avg_after"]) == 3
        assert isinstance(summary["machine_busy"], bool) and "load average" in summary["busy_rule"]
        assert summary["commit"] is None or isinstance(summary["commit"], str)
        assert "load average (1, 5, 15 min)" in done.stdout and "at the start" in done.stdout
        assert "batches of 1,000" in done.stdout

        # a copy of the run in history/, named by its measured_at
        copies = list((tmp_path / "history").glob("*.json"))
        assert [c.name for c in copies] == [summary["measured_at"].replace(":", "-") + ".json"]
        assert json.loads(copies[0].read_text()) == summary
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_online_bench_measures_the_bare_model_the_door_and_a_real_server(
        tmp_path: Path, pg_server: str, trained_models: Path) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    shutil.copytree(trained_models, tmp_path / "work" / "models")  # the session's model: the bench adopts it
    out = tmp_path / "online.json"
    env = dict(os.environ, SCORING_BENCH_WORK=str(tmp_path / "work"), SCORING_BENCH_SCHEMA=schema,
               SCORING_BENCH_PG=pg_server, SCORING_BENCH_SMALL_MODELS="1")
    try:  # tiny counts: the figures are not the point, the run and its file are
        done = subprocess.run([sys.executable, "benchmarks/online.py", "--reps", "20", "--warmup", "2",
                               "--seconds", "0.3", "--clients", "1", "8", "--no-threads", "--out", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads(out.read_text())
        results = summary["results"]

        # the same rows, the same model: the door's scores are the bare model's, every row scored
        assert summary["same_scores"] is True and summary["rows"] == 100
        assert results["model"] == {"name": "churn", "version": 1}
        for kind in ("bare_predict", "bare_transform_predict", "door", "http"):
            assert set(results[kind]) == {"1", "100"}, kind
            for size, fig in results[kind].items():
                assert 0 < fig["p50_ms"] <= fig["p99_ms"] <= fig["max_ms"], (kind, size)
                assert fig["n"] == (20 if size == "1" else 20), (kind, size)

        # the load levels: each one's requests all answered 200, rows = requests x rows per request
        assert sorted(results["load"]) == ["100x1", "100x8", "1x1", "1x8"]
        for name, level in results["load"].items():
            assert level["errors"] == 0 and level["requests"] > 0, name
            assert f"{level['rows_per_request']}x{level['clients']}" == name
            assert level["rows_per_s"] == pytest.approx(level["requests_per_s"] * level["rows_per_request"], rel=0.01)
            assert level["server_cpu_cores"] >= 0 and level["client_cpu_cores"] >= 0
        eight = results["load"]["1x8"]
        assert summary["p99_over_p50_at_8_clients"] == round(eight["p99_ms"] / eight["p50_ms"], 2)

        # the headline differences are those of the figures beside them
        assert summary["door_overhead_p50_ms"] == round(
            results["door"]["1"]["p50_ms"] - results["bare_transform_predict"]["1"]["p50_ms"], 3)
        assert summary["http_overhead_p50_ms"] == round(
            results["http"]["1"]["p50_ms"] - results["bare_transform_predict"]["1"]["p50_ms"], 3)
        assert summary["door_overhead_met"] == (summary["door_overhead_p50_ms"] <= summary["door_overhead_goal_ms"])

        assert "threads" not in results and "server_threads" not in results  # --no-threads: a second server's start

        # printed: the table, the goals, the machine's load; the clients share the machine and it says so
        for text in ("door, in process (Door.score)", "HTTP, one keep-alive client", "door overhead, 1 row:",
                     "p99 / p50 under 8 clients, 1 row:", "load average (1, 5, 15 min)", "cores as the server"):
            assert text in done.stdout, text
        assert isinstance(summary["machine_busy"], bool) and len(summary["load_avg_before"]) == 3

        # the server was stopped: nothing listens on its port any more; a copy of the run in history/online/
        copies = list((tmp_path / "history" / "online").glob("*.json"))
        assert [c.name for c in copies] == [summary["measured_at"].replace(":", "-") + ".json"]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", int(summary["results"]["server_port"])), timeout=2).close()

        # every answer of the run is on record, in the job's online table
        with psycopg.connect(pg_server) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            recorded = conn.execute("SELECT COUNT(*) FROM bench_online_predictions_online").fetchone()[0]
        answered = sum(lv["rows_per_request"] * (lv["requests"] + lv["warmup_requests"])
                       for lv in results["load"].values())
        answered += sum(int(size) * (fig["n"] + 2) for size, fig in results["http"].items())  # 2: the warm-up
        assert recorded == answered
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_ab_bench_measures_the_assignment_and_a_split_beside_the_shadow_and_the_champion(
        tmp_path: Path, pg_server: str) -> None:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    out = tmp_path / "ab.json"
    env = dict(os.environ, SCORING_BENCH_WORK=str(tmp_path / "work"), SCORING_BENCH_SCHEMA=schema,
               SCORING_BENCH_PG=pg_server, SCORING_BENCH_SMALL_MODELS="1", SCORING_BENCH_AB_ROWS="2000",
               SCORING_BENCH_AB_KEYS="20000")
    try:  # tiny counts: the figures are not the point, the runs and the file are
        done = subprocess.run([sys.executable, "benchmarks/ab.py", "--out", str(out)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads(out.read_text())
        results = summary["results"]
        for name in ("integer", "text"):  # a 10% split of the keys, within 4 sigma
            assert abs(results["assignment"][name]["arm_share"] - 0.1) < 4 * (0.1 * 0.9 / 20000) ** 0.5
        for kind in ("champion", "shadow", "split"):
            assert results[kind]["rows"] == 2000 and results[kind]["wall_s"] > 0, kind
        assert "arms" in results["split"]["parts"] and "shadow" in results["split"]["parts"]
        arms = results["split"]["arms"]["arms"]  # every scored row in one arm or the other
        assert arms["champion"]["rows"] + arms["challenger"]["rows"] == results["split"]["scored"]
        assert summary["split_over_shadow"] == results["split"]["wall_s"] / results["shadow"]["wall_s"]
        assert [c.name for c in (tmp_path / "history" / "ab").glob("*.json")] == [
            summary["measured_at"].replace(":", "-") + ".json"]
        assert "split / shadow" in done.stdout and "load average (1, 5, 15 min)" in done.stdout
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

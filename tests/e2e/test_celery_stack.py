"""The docker-compose topology started natively: CeleryExecutor, 2 workers, Redis, PostgreSQL,
and sharded runs whose mapped shard tasks the workers execute.

`scripts/native_stack.py up` starts api-server, scheduler, DAG processor, triggerer and two
Celery workers against the local PostgreSQL (metadata and predictions in two databases)
and Redis, and the online door. The test triggers runs through the REST API with params, as
the UI's trigger form does, waits for the scheduler to run them on the workers, and reads the
predictions from PostgreSQL; it scores a row through the online door with the token the stack
made, and finds its record in the stack's database.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import requests
import yaml

from tests.conftest import clean_customers, write_job, write_partition
from tests.e2e.conftest import STACK, native_stack, stack_session, wait_for_dag

pytestmark = [pytest.mark.airflow, pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres]


def test_rest_triggered_runs_execute_on_two_celery_workers(home: Path, tmp_path: Path, pg_server: str) -> None:
    days = [dt.date(2026, 10, 5), dt.date(2026, 10, 6)]
    for day in days:
        write_partition(home, day=day, n=1500)
    # two shards per run: the mapped score_shard tasks go to the workers through Redis
    write_job(home, start_date="2026-09-01", source={"path": str(home / "data" / "churn"), "shards": 2})
    with native_stack(tmp_path, pg_server, workers=2, serve="churn_test") as stack:
        api, stack_home, up = stack.api, stack.home, stack.up
        passwords = stack_home / "simple_auth_manager_passwords.json.generated"
        # what an operator is told, and what stays private
        assert f"Airflow UI and API: {api}  (user admin, password in {passwords}" in up.stdout
        assert api.startswith("http://127.0.0.1:")
        assert (stack_home / "stack.env.json").stat().st_mode & 0o777 == 0o600
        assert passwords.stat().st_mode & 0o777 == 0o600
        assert stack_home.stat().st_mode & 0o777 == 0o700
        assert {p.stat().st_mode & 0o777 for p in stack_home.glob("*.log")} == {0o600}, "logs hold the password too"
        env = subprocess.run([*STACK, "env", "--home", str(stack_home)], capture_output=True, text=True, timeout=60)
        assert f"export AIRFLOW_HOME={stack_home}" in env.stdout and "export AIRFLOW__CORE__EXECUTOR=CeleryExecutor" \
            in env.stdout
        served = _online_door(stack.state, stack_home, up.stdout, stack.scoring_db)
        _, http = stack_session(api, stack_home)
        wait_for_dag(http, api, "churn_test")
        assert http.patch(f"{api}/api/v2/dags/churn_test", json={"is_paused": False}, timeout=30).ok
        run_ids = []
        for day in days:  # the trigger form: conf holds the params
            resp = http.post(f"{api}/api/v2/dags/churn_test/dagRuns", timeout=30,
                             json={"logical_date": None, "conf": {"partition_date": day.isoformat()}})
            assert resp.status_code == 200, resp.text
            run_ids.append(resp.json()["dag_run_id"])
        deadline = time.monotonic() + 400
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {r: http.get(f"{api}/api/v2/dags/churn_test/dagRuns/{r}", timeout=30).json()["state"]
                      for r in run_ids}
            if all(s in ("success", "failed") for s in states.values()):
                break
            time.sleep(3)
        assert set(states.values()) == {"success"}, (states, _tail(stack_home))

        with psycopg.connect(stack.scoring_db) as conn:
            for day, run_id in zip(days, run_ids, strict=True):
                count, runs = conn.execute("SELECT COUNT(*), array_agg(DISTINCT run_id) FROM churn_test_predictions "
                                           "WHERE partition_date = %s", (day,)).fetchone()
                ledger = conn.execute("SELECT status, rows_written FROM scoring_runs WHERE run_id = %s",
                                      (run_id,)).fetchone()
                assert count > 1400 and runs == [run_id] and ledger == ("success", count)
        # both Celery workers executed task instances
        for worker in ("worker1", "worker2"):
            log = (stack_home / f"{worker}.log").read_text()
            assert "churn_test" in log, f"{worker} ran no task:\n{log[-2000:]}"
            assert "address already in use" not in log.lower(), "each worker has its own log-server port"
        assert "127.0.0.1" in (stack_home / "api-server.log").read_text()
        # the stack's exporter took Airflow's metrics and the pipeline's, as the compose stack's does
        metrics = requests.get(json.loads(up.stdout.strip().splitlines()[-1])["metrics"], timeout=30).text
        assert re.search(r'^scoring_run_status\{dry_run="false",job="churn_test",mode="persist"\} 1\.0$', metrics,
                         re.M), metrics[-2000:]
        assert re.search(r"^airflow_ti_finish_total", metrics, re.M), "Airflow's own metrics, in the same place"
    assert not _running(served), "down stops the online door too"


def _online_door(state: dict, stack_home: Path, printed: str, scoring_db: str) -> int:
    """The stack's online door: ready, its token private, a row scored and recorded; its pid."""
    serve = state["serve"]
    url, tokens = serve["url"], Path(serve["tokens_file"])
    assert url.startswith("http://127.0.0.1:") and tokens == stack_home / "serve_tokens"
    assert tokens.stat().st_mode & 0o777 == 0o600
    assert f"Online door (job churn_test): POST {url}/v1/jobs/churn_test:score, docs at {url}/docs" in printed
    assert f"(bearer token in {tokens}, readable by you only)" in printed
    [token] = [line for line in tokens.read_text().splitlines() if line and not line.startswith("#")]
    assert requests.get(f"{url}/health/ready", timeout=30).status_code == 200
    row = json.loads(clean_customers(1).to_json(orient="records"))[0]
    answer = requests.post(f"{url}/v1/jobs/churn_test:score", json=row, timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["results"]
    assert (result["key"], result["status"], result["model"]["name"]) == (row["customer_id"], "scored", "churn")
    assert requests.post(f"{url}/v1/jobs/churn_test:score", json=row, timeout=30).status_code == 401
    metrics = requests.get(f"{url}/metrics", timeout=30).text
    assert re.search(r'^scoring_online_requests_total\{code="200",job="churn_test"\} 1\.0$', metrics, re.M), metrics
    assert re.search(r'^scoring_online_ready\{job="churn_test"\} 1\.0$', metrics, re.M)
    # Prometheus's configuration for this stack scrapes the door where it listens, with the shipped alerts
    scrape = {j["job_name"]: j for j in yaml.safe_load((stack_home / "prometheus.yml").read_text())["scrape_configs"]}
    assert scrape["scoring-online"]["static_configs"] == [{"targets": [url.removeprefix("http://")]}]
    assert scrape["scoring-online"]["honor_labels"] is True
    deadline = time.monotonic() + 30  # the recorder writes off the request path
    while True:
        with psycopg.connect(scoring_db) as conn:
            found = conn.execute("SELECT to_regclass('churn_test_predictions_online') IS NOT NULL").fetchone()[0] \
                and conn.execute("SELECT COUNT(*) FROM churn_test_predictions_online").fetchone()[0]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found == 1, "the answer is on record in the stack's database"
    assert not [p.name for p in stack_home.glob("*.log") if token in p.read_text()], "the token is in no log"
    [pid] = [p["pid"] for p in state["pids"] if p["name"] == "scoring-serve"]
    return pid


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, not yet reaped, is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _tail(home: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(home.glob("*.log")))

"""The scoring DAG run by Airflow itself: `airflow dags test` and the scheduler (backfill)."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import run
from pipeline.ledger import as_json
from tests.conftest import DAY, statsd_lines, with_challenger, write_job, write_partition
from tests.e2e.conftest import dags_test, stack_session

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def _ledger(job_id: str = "churn_test") -> list[dict]:
    with run.engine(run.find_job(job_id)).connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM scoring_runs WHERE job_id = :j ORDER BY started_at"), {"j": job_id}).mappings()]


def _count(day: dt.date, table: str = "churn_test_predictions") -> int:
    with run.engine(run.find_job("churn_test")).connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE partition_date = :d"), {"d": day}).scalar()


def test_dags_test_end_to_end(any_db: str, home: Path, migrated_home: Path, challenger_models: Path) -> None:
    challenger = with_challenger(home, challenger_models)
    write_partition(home, n=1500)
    write_job(home, model={"name": "churn", "challengers": ["challenger"]})  # with a challenger in the shadow
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    [row] = _ledger()
    assert row["status"] == "success" and row["run_id"].startswith("manual__")
    assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    assert _count(DAY) == row["rows_written"] == row["rows_scored"] > 1000
    assert _count(DAY, "churn_test_predictions_shadow") == row["rows_scored"]
    with run.engine(run.find_job("churn_test")).connect() as conn:
        compared = conn.execute(sa.text("SELECT status, challenger_version, rows_compared, run_id FROM "
                                        "scoring_shadow_comparisons")).mappings().all()
    assert [dict(c) for c in compared] == [{"status": "compared", "challenger_version": challenger,
                                            "rows_compared": row["rows_scored"], "run_id": row["run_id"]}]
    assert set(as_json(row["stage_seconds"])) == {"ingest", "validate", "preprocess", "score", "drift_gate", "persist",
                                                  "finalize"}
    assert set(as_json(row["part_seconds"])) == {"shadow"}, "the challengers' part of the score task, timed"
    assert not list((home / "staging").rglob("*.arrow")) and not list((home / "staging").rglob("*.parquet"))
    states = _task_states(migrated_home, row["run_id"])  # no breach: the check passes
    assert (states["check_quality"], states["checks_done"]) == ("success", "success"), states
    log = out.stdout + out.stderr  # what an operator reads in the task logs
    assert "Skipping registering function" not in log, "Great Expectations' import noise is kept out"
    for stage in ("ingest", "validate", "preprocess", "score", "persist", "finalize"):
        assert f"{stage}: started" in log and re.search(rf"{stage}: done in \d+\.\d+s", log), stage
    assert re.search(r"validate: \d+/\d+ rows \(\d+ rows/s\)", log) and re.search(r"score: \d+/\d+ rows", log)
    assert "validation report: " in log


def test_output_database_from_an_airflow_connection(home: Path, migrated_home: Path, pg_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No AIRFLOW_CONN_* variable: the task reads the connection stored in Airflow's metadata DB."""
    from tests.e2e.conftest import AIRFLOW, airflow_env

    conn_id = f"scoring_pg_{abs(hash(pg_url)) % 10**8}"
    schema = pg_url.rsplit("%3D", 1)[1]
    extra = json.dumps({"options": f"-csearch_path={schema}"})
    add = subprocess.run([AIRFLOW, "connections", "add", conn_id, "--conn-type", "postgres", "--conn-host",
                          "127.0.0.1", "--conn-port", "5432", "--conn-login", "postgres", "--conn-schema", "test",
                          "--conn-extra", extra], env=airflow_env(migrated_home), capture_output=True, text=True)
    assert add.returncode == 0, add.stderr[-2000:]
    write_partition(home, n=800)
    write_job(home, output={"table": "churn_test_predictions", "connection": conn_id})
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", pg_url)  # read back from the same schema
    [row] = _ledger()
    assert row["status"] == "success" and _count(DAY) == row["rows_written"] > 700


def test_params_override_partition_model_and_dry_run(home: Path, migrated_home: Path) -> None:
    other = DAY - dt.timedelta(days=5)
    write_partition(home, day=other, n=800)
    write_job(home)
    conf = json.dumps({"partition_date": other.isoformat(), "model_ref": "1", "dry_run": True})
    out = dags_test(migrated_home, "churn_test", DAY.isoformat(), conf)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    [row] = _ledger()
    assert str(row["partition_date"]) == other.isoformat()
    assert row["dry_run"] in (1, True) and row["rows_written"] == 0 and row["model_version"] == 1


def test_a_day_long_past_with_no_data_fails_at_once_as_missing_with_a_ledger_row_and_a_metric(
        home: Path, migrated_home: Path, statsd: socket.socket) -> None:
    write_job(home)  # 2026-11-05 was expected by 2026-11-06 00:00 UTC: long past, nothing to wait for
    out = dags_test(migrated_home, "churn_test", "2026-11-05")
    text = out.stdout + out.stderr
    expected = str(home / "data" / "churn" / "date=2026-11-05")
    assert re.search(r"no data for 2026-11-05 \(expected by 2026-11-06 00:00 UTC\); waited 0\.\d min: no \*\.parquet "
                     f"files at {re.escape(expected)}", text), text[-4000:]
    assert "next look at" not in text, "a day long past is not looked at again"
    [row] = _ledger()
    assert (row["status"], row["failed_stage"], str(row["partition_date"])) == ("missing", "wait_for_partition",
                                                                               "2026-11-05")
    assert row["error"].startswith("no data for 2026-11-05 (expected by 2026-11-06 00:00 UTC); waited")
    metrics = statsd_lines(statsd)
    assert any(m.startswith("scoring.run.") and "job:churn_test" in m and "status:missing" in m
               for m in metrics), metrics


def test_a_sensor_timeout_on_a_day_not_due_yet_leaves_a_missing_row_and_a_metric(
        home: Path, migrated_home: Path, statsd: socket.socket) -> None:
    # not due for years: the sensor waits ("not due yet") until its own timeout (0.02 min), then gives up
    write_job(home, source={"path": str(home / "data" / "churn"), "wait_timeout_minutes": 0.02,
                            "poke_interval_seconds": 1, "expected_days_after": 366, "expected_by": "06:00"})
    out = dags_test(migrated_home, "churn_test", "2026-11-05")
    text = out.stdout + out.stderr
    expected = str(home / "data" / "churn" / "date=2026-11-05")
    assert f"did not appear at {expected}" in text, text[-4000:]
    assert re.search(r"not there yet \(no \*\.parquet files\); not due yet \(expected by 2027-11-06 06:00 UTC\); "
                     r"next look at \S+ \S+ UTC \(in 1s\); gives up at", text), text[-4000:]
    [row] = _ledger()
    assert (row["status"], row["failed_stage"]) == ("missing", "wait_for_partition")
    assert re.match(r"no data for 2026-11-05 \(expected by 2027-11-06 06:00 UTC\); waited 0\.\d+ min", row["error"])
    assert any("status:missing" in m for m in statsd_lines(statsd))


def test_a_sql_source_not_ready_fails_the_sensor_naming_the_query_and_connection(
        home: Path, migrated_home: Path) -> None:
    with _sqlite(home) as conn:
        conn.execute(sa.text("CREATE TABLE feature_rows (day TEXT, customer_id INTEGER)"))
    write_job(home, source={"kind": "sql", "query": "SELECT * FROM feature_rows WHERE day = :partition_date",
                            "wait_timeout_minutes": 0.02, "poke_interval_seconds": 1})
    out = dags_test(migrated_home, "churn_test", "2026-11-05")
    text = out.stdout + out.stderr
    assert ("no data for 2026-11-05 (expected by 2026-11-06 00:00 UTC); waited 0.0 min: whether the query of "
            "source.query 'SELECT * FROM feature_rows WHERE day = :partition_date' on connection 'scoring_db' "
            "returns a row never said so. Check the upstream load") in text, text[-4000:]
    assert [r["status"] for r in _ledger()] == ["missing"]


def _sqlite(home: Path) -> Any:
    return sa.create_engine(f"sqlite:///{home / 'scoring.db'}").begin()


def _pg_stack(stack_factory, airflow_home: Path, airflow_pg_db: str) -> Any:
    """A stack of this Airflow home on a PostgreSQL metadata database (several processes write it), migrated."""
    stack = stack_factory(
        airflow_home,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=airflow_pg_db,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=airflow_pg_db.replace("+psycopg", "+psycopg_async"),
    )
    stack.cli("db", "migrate")
    return stack


def _has_ledger() -> bool:
    try:
        _ledger()
    except Exception:  # noqa: BLE001 - no table yet: nothing ran, as expected
        return False
    return True


def test_broken_job_file_does_not_break_other_dags(home: Path, migrated_home: Path) -> None:
    write_partition(home, n=500)
    write_job(home)
    (home / "jobs" / "typo_job.yaml").write_text("job_id: typo_job\nschedul: '0 2 * * *'\n")
    out, broken = (dags_test(migrated_home, dag_id, DAY.isoformat()) for dag_id in ("churn_test", "typo_job"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = broken.stdout + broken.stderr
    assert "unknown key 'schedul'" in text and "did you mean 'schedule'" in text


def test_list_import_errors_is_empty(migrated_home: Path) -> None:
    from tests.e2e.conftest import AIRFLOW, airflow_env

    env = airflow_env(migrated_home)
    env.pop("SCORING_JOBS_DIR", None)  # the shipped job files
    subprocess.run([AIRFLOW, "dags", "reserialize"], env=env, capture_output=True, text=True, timeout=300, check=True)
    out = subprocess.run([AIRFLOW, "dags", "list-import-errors", "--output", "json"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("[]", "No data found"), out.stdout[-2000:]


def test_backfill_over_two_days_scores_two_partitions_and_refuses_a_fixed_partition_date(
    home: Path, tmp_path: Path, stack_factory, airflow_pg_db: str
) -> None:
    days = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(2)]
    for day in days:
        write_partition(home, day=day, n=600)
    write_job(home, start_date="2026-09-01", catchup=False)  # (a failed task is retried in 6 s: write_job)
    # the same job under another id, for the backfill that must be refused (one backfill per DAG at a time, and
    # Airflow closes a finished one only every 30 s: a second DAG lets both run at once)
    write_job(home, job_id="refused_test", start_date="2026-09-01", catchup=False)
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    # several Airflow processes write the metadata DB at once: PostgreSQL, as in production
    stack = _pg_stack(stack_factory, airflow_home, airflow_pg_db)
    stack.start(["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"])
    stack.wait_for("the DAGs to be parsed", lambda: stack.parsed("churn_test", "refused_test"))
    stack.cli("dags", "unpause", "churn_test")
    stack.cli("dags", "unpause", "refused_test")
    # CronDataIntervalTimetable: a run covers [D 00:00, D+1 00:00); to-date is the last interval's end
    stack.cli("backfill", "create", "--dag-id", "churn_test", "--from-date", "2026-10-01", "--to-date", "2026-10-03")
    # a partition_date in a backfill's conf would make every run score that one day: refused (3 runs: 5-7 Oct)
    stack.cli("backfill", "create", "--dag-id", "refused_test", "--from-date", "2026-10-05", "--to-date",
              "2026-10-07", "--dag-run-conf", json.dumps({"partition_date": "2026-10-01"}))

    def done() -> bool:
        rows = [r for r in _ledger() if r["run_id"].startswith("backfill__")] if _has_ledger() else []
        return len([r for r in rows if r["status"] == "success"]) == 2

    stack.wait_for("two backfill runs to succeed", done, timeout=300)
    rows = [r for r in _ledger() if r["run_id"].startswith("backfill__") and r["status"] == "success"]
    assert sorted(str(r["partition_date"]) for r in rows) == [d.isoformat() for d in days]
    for day in days:
        assert _count(day) > 500

    def refused() -> list[Path]:
        return [p for p in (airflow_home / "logs").rglob("*.log")
                if "dag_id=refused_test" in str(p) and "run_id=backfill__2026-10-0" in str(p)
                and "given to a backfill" in p.read_text()]

    stack.wait_for("the backfill with a partition_date to be refused", lambda: len(refused()) == 3, timeout=300)
    assert "every run of the backfill would score that one day" in refused()[0].read_text()
    # announce_breach runs whatever happened before it (all_done): a run without a partition has no breach, a skip
    breach_logs = [p for p in (airflow_home / "logs").rglob("*.log") if "dag_id=refused_test" in str(p)
                   and "run_id=backfill__" in str(p) and "task_id=announce_breach" in str(p)]
    assert breach_logs and all("this run has no partition" in p.read_text() for p in breach_logs)
    # the third interval's day (3 Oct) has no data and is long past its expected arrival: missing, at once

    def backfilled() -> list[tuple[str, str]]:
        return sorted((str(r["partition_date"]), r["status"]) for r in _ledger() if r["run_id"].startswith("backfill"))

    stack.wait_for("3 Oct to be recorded missing", lambda: len(backfilled()) == 3, timeout=120)
    assert backfilled() == [*[(d.isoformat(), "success") for d in days], ("2026-10-03", "missing")]
    # nothing else scored: the unpaused DAG's own scheduled run found no data for yesterday (missing too)
    assert {r["status"] for r in _ledger() if not r["run_id"].startswith("backfill")} <= {"missing"}
    assert [r for r in _ledger("refused_test") if r["run_id"].startswith("backfill")] == [], \
        "a refused run scores nothing (and, having no partition, has no row)"
    shutil.rmtree(airflow_home / "logs", ignore_errors=True)


def test_drift_alert_fires_from_the_finalize_callback(home: Path, migrated_home: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.demo.receiver import Receiver

    write_partition(home, n=2000, shift=1.0)
    write_job(home, drift={"alert_connection": "drift_hook"})
    with Receiver() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_DRIFT_HOOK", hook.url)
        out = dags_test(migrated_home, "churn_test", DAY.isoformat())
        alerts = [p.rows[0] for p in hook.store.posts]
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    [row] = _ledger()
    assert row["status"] == "success" and _count(DAY) == row["rows_written"]  # drift warns, does not block
    assert "DRIFT ALERT job churn_test" in text and "support_tickets_90d (PSI" in text
    [alert] = alerts
    assert alert["run_id"] == row["run_id"] and "support_tickets_90d" in {d["feature"] for d in alert["drifted"]}
    # the grid: check_quality failed on the flagged breach, the run stays green (published, announced)
    assert row["breach"] == "drift"
    states = _task_states(migrated_home, row["run_id"])
    assert (states["check_quality"], states["checks_done"], states["announce_persist"]) == (
        "failed", "success", "success"), states
    assert _run_state(migrated_home, row["run_id"]) == "success"
    assert f"partition {DAY} of job churn_test (run {row['run_id']}, attempt 1) was published with a flagged " \
           "breach: drift: " in text


def _task_states(airflow_home: Path, run_id: str) -> dict[str, str]:
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        return dict(conn.execute(sa.text("SELECT task_id, state FROM task_instance WHERE run_id = :r"),
                                 {"r": run_id}).all())


def _run_state(airflow_home: Path, run_id: str) -> str:
    with sa.create_engine(f"sqlite:///{airflow_home / 'airflow.db'}").connect() as conn:
        return conn.execute(sa.text("SELECT state FROM dag_run WHERE run_id = :r"), {"r": run_id}).scalar_one()


def test_sharded_job_maps_shards_and_publishes_once(home: Path, migrated_home: Path) -> None:
    write_partition(home, n=2000, files=4)
    write_job(home, source={"path": str(home / "data" / "churn"), "shards": 3, "batch_rows": 500,
                            "wait_timeout_minutes": 0.05, "poke_interval_seconds": 1})
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "planned 3 shard(s) over 4 file(s)" in text
    for i in range(3):
        assert f"score[shard {i}]: done" in text
    [row] = _ledger()
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    assert _count(DAY) == row["rows_written"] == row["rows_scored"] > 1900
    assert not list((home / "staging").rglob("*.arrow")) and not list((home / "staging").rglob("*.parquet"))
    assert as_json(row["part_seconds"]) == {}, "a job whose steps have no parts"


def test_a_cascade_job_runs_through_airflow(cascade_home: Path, migrated_home: Path) -> None:
    """The cascade's plan travels between the tasks (XCom) and every route lands with its lineage."""
    home = cascade_home
    write_partition(home, n=1200)
    write_job(home, model={"name": "segments"}, output={"table": "cascade_predictions", "connection": "scoring_db"},
              cascade={"routes": {"frequent": {"name": "churn_frequent"}, "occasional": {"name": "churn_occasional"}}})
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    [row] = _ledger()
    assert row["status"] == "success" and row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    routes = as_json(row["routes"])
    assert set(routes["routes"]) == {"frequent", "occasional"} and all(r["rows"] > 100 for r in routes["routes"].values())
    with run.engine(run.find_job("churn_test")).connect() as conn:
        lineage = conn.execute(sa.text("SELECT route, model_name, router_model, COUNT(*) FROM cascade_predictions "
                                       "GROUP BY 1, 2, 3 ORDER BY 1")).all()
    assert [tuple(r[:3]) for r in lineage] == [("frequent", "churn_frequent", "segments"),
                                               ("occasional", "churn_occasional", "segments")]
    assert sum(r[3] for r in lineage) == row["rows_scored"]
    assert "route frequent -> churn_frequent v1" in out.stdout + out.stderr
    parts = as_json(row["part_seconds"])  # the score task's parts, timed in the ledger (issue 26)
    assert set(parts) == {"route", "merge_routes", *(f"{step}[route {route}]" for route in ("frequent", "occasional")
                                                     for step in ("validate", "router_flags", "preprocess", "score"))}
    assert all(v > 0 for v in parts.values()) and "route" not in as_json(row["stage_seconds"])


def test_a_published_partition_is_an_asset_event_that_runs_the_downstream_dag(
        home: Path, tmp_path: Path, stack_factory, airflow_pg_db: str) -> None:
    import psycopg

    write_partition(home, n=700)
    write_partition(home, day=DAY - dt.timedelta(days=1), n=300)
    write_job(home, schedule=None)
    # a job waiting on an upstream's asset instead of a clock: a run per partitioned event, for its day
    write_job(home, job_id="fed_test", schedule=None, source={"path": str(home / "data" / "churn"),
                                                              "asset": "warehouse.churn_inputs"})
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    stack = _pg_stack(stack_factory, airflow_home, airflow_pg_db)
    stack.start(["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"])
    stack.wait_for("the three DAGs to be parsed", lambda: stack.parsed("churn_test", "churn_test_summary", "fed_test"))
    for dag_id in ("churn_test", "churn_test_summary", "fed_test"):
        stack.cli("dags", "unpause", dag_id)
    stack.wait_for("the API server", stack.api_up)
    _, http = stack_session(f"http://127.0.0.1:{stack.port}", airflow_home)
    api = f"http://127.0.0.1:{stack.port}/api/v2"
    [upstream] = [a for a in http.get(f"{api}/assets", timeout=30).json()["assets"]
                  if a["name"] == "warehouse.churn_inputs"]
    posted = http.post(f"{api}/assets/events", json={"asset_id": upstream["id"], "partition_key": DAY.isoformat(),
                                                     "extra": {"loaded_by": "test"}}, timeout=30)
    assert posted.status_code == 200, posted.text
    stack.cli("dags", "trigger", "churn_test", "--conf", json.dumps({"partition_date": DAY.isoformat()}))
    dry = json.dumps({"partition_date": (DAY - dt.timedelta(days=1)).isoformat(), "dry_run": True})
    stack.cli("dags", "trigger", "churn_test", "--conf", dry)  # a dry run publishes nothing: no event

    metadata = airflow_pg_db.replace("postgresql+psycopg://", "postgresql://")

    def query(sql: str) -> list[tuple]:
        with psycopg.connect(metadata) as conn:
            return conn.execute(sql).fetchall()

    def summarized() -> bool:
        return query("SELECT state FROM dag_run WHERE dag_id = 'churn_test_summary'") == [("success",)]

    stack.wait_for("the summary DAG to run on the asset event", summarized, timeout=300)
    stack.wait_for("both scoring runs to end", lambda: sorted(s for (s,) in query(
        "SELECT state FROM dag_run WHERE dag_id = 'churn_test'")) == ["success", "success"], timeout=120)
    [(partition_key, extra)] = query("SELECT e.partition_key, e.extra FROM asset_event e JOIN asset a ON "
                                     "a.id = e.asset_id WHERE a.name = 'churn_test.predictions'")
    stack.wait_for("the asset-scheduled scoring run", lambda: [r["status"] for r in _ledger("fed_test")] == ["success"],
                   timeout=180)
    [fed] = _ledger("fed_test")
    assert str(fed["partition_date"]) == DAY.isoformat() and fed["rows_written"] > 600
    [row] = [r for r in _ledger() if not r["dry_run"]]
    assert partition_key == DAY.isoformat()
    assert extra["partition_date"] == DAY.isoformat() and extra["model_version"] == 1 and extra["mode"] == "persist"
    for field in ("rows_in", "rows_valid", "rows_quarantined", "rows_scored", "rows_written"):
        assert extra[field] == row[field], field
    assert query("SELECT partition_key FROM dag_run WHERE dag_id = 'churn_test_summary'") == [(DAY.isoformat(),)]
    [(value,)] = query("SELECT value FROM xcom WHERE dag_id = 'churn_test_summary' AND key = 'return_value'")
    summary = value if isinstance(value, dict) else json.loads(value)
    assert summary["rows"] == row["rows_written"] and summary["event"]["run_id"] == row["run_id"]
    skipped = query("SELECT ti.state FROM task_instance ti JOIN dag_run r ON r.run_id = ti.run_id AND "
                    "r.dag_id = ti.dag_id WHERE ti.task_id = 'announce_persist' AND ti.dag_id = 'churn_test' "
                    "ORDER BY ti.state")
    assert skipped == [("skipped",), ("success",)], "the dry run's announce is skipped"
    shutil.rmtree(airflow_home / "logs", ignore_errors=True)


def test_a_run_past_its_deadline_alerts_through_the_drift_alert_path(
        home: Path, tmp_path: Path, stack_factory, airflow_pg_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.demo.receiver import Receiver

    # a daily schedule that ticked two hours ago, with a deadline one hour after that tick: the run the
    # scheduler makes for the latest interval (whose partition is not there: it waits in the sensor) is late
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    tick, due = now - dt.timedelta(hours=2), now - dt.timedelta(hours=1)
    days_after = 1 if due.time() > tick.time() else 2
    write_job(home, schedule=f"{tick.minute} {tick.hour} * * *",
              deadline={"publish_by": f"{due:%H:%M}", "days_after": days_after},
              drift={"alert_connection": "ops_hook"},
              source={"path": str(home / "data" / "churn"), "wait_timeout_minutes": 10,
                      "poke_interval_seconds": 60})  # the sensor only has to wait: each poke is a task process
    airflow_home = tmp_path / "airflow"
    airflow_home.mkdir()
    with Receiver() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_OPS_HOOK", hook.url)
        stack = _pg_stack(stack_factory, airflow_home, airflow_pg_db)
        stack.start(["api-server", "--port", str(stack.port)], ["scheduler"], ["dag-processor"], ["triggerer"])
        stack.wait_for("the DAG to be parsed", lambda: stack.parsed("churn_test"))
        # a manual re-run of an old day is late by design: no alert for it
        stack.cli("dags", "trigger", "churn_test", "--logical-date", "2026-10-01T02:00:00+00:00")
        stack.cli("dags", "unpause", "churn_test")
        stack.wait_for("the deadline alert", lambda: bool(hook.store.posts), timeout=240)
        # the manual run's deadline passed too: it must stay silent (the triggerer says it decided so)
        stack.wait_for("the manual run's deadline to be judged", lambda: "not a scheduled run, no alert" in (
            airflow_home / "triggerer.log").read_text(), timeout=120)
        alerts = [p.rows[0] for p in hook.store.posts]
    [alert] = alerts
    logical = dt.datetime.combine(now.date(), tick.time(), dt.UTC)
    logical -= dt.timedelta(days=1 if logical <= now else 2)  # the latest interval's start
    day = logical.date()
    assert alert["kind"] == "deadline_missed" and alert["partition_date"] == day.isoformat()
    assert alert["run_id"].startswith("scheduled__") and alert["state"] in ("running", "queued")
    assert alert["text"].startswith(f"DEADLINE MISSED job churn_test: partition {day} was not published by ")
    assert f"(deadline.publish_by {due:%H:%M}, {days_after} day(s) after the partition)" in alert["text"]
    triggerer = (airflow_home / "triggerer.log").read_text()
    assert "DEADLINE MISSED job churn_test" in triggerer, "the ERROR line of record, in the triggerer's log"
    assert "not a scheduled run, no alert" in triggerer

"""Metrics as an operator sees them: real runs (the CLI's, and Airflow's own `dags test`) send StatsD to the
exporter (scripts/statsd_exporter.py with the shipped mapping), Debian's real Prometheus scrapes it with the
shipped scrape config and evaluates the shipped alerts, and what its HTTP API answers is checked against the
ledger: the scoring job's label survives, values are exact, failures stay, the alert that fires names the job."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline import ledger, local, metrics, never_ran, run
from pipeline.errors import ScoringError
from tests.conftest import DAY, ROOT, scoring_cli, write_job, write_partition
from tests.e2e.conftest import dags_test, free_port
from tests.prometheus_bin import need

pytestmark = [pytest.mark.airflow, pytest.mark.slow]


def wait_until(what: str, check: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except (requests.ConnectionError, AssertionError, KeyError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f} s for {what}")
        time.sleep(0.3)


@pytest.fixture
def exporter() -> Iterator[tuple[int, str]]:
    """scripts/statsd_exporter.py on free ports, with its default mapping (monitoring/statsd_mapping.yml):
    (its StatsD UDP port, its /metrics URL)."""
    udp, web = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "statsd_exporter.py"), "--statsd-port", str(udp),
                             "--web-port", str(web)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{web}/metrics"
    try:
        wait_until(f"the exporter at {url}", lambda: requests.get(url, timeout=2).ok, 20)
        yield udp, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Prometheus:
    """Debian's prometheus, scraping the exporter every second with the shipped scrape config and alerts."""

    def __init__(self, base: str) -> None:
        self.base = base

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.base}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def one(self, promql: str) -> str:
        """The value of a query that has one series, as Prometheus's API writes it (exact text)."""
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return result[0]["value"][1]

    def alerts(self) -> list[dict[str, Any]]:
        return requests.get(f"{self.base}/api/v1/alerts", timeout=10).json()["data"]["alerts"]


@pytest.fixture
def prometheus(exporter: tuple[int, str], tmp_path: Path) -> Iterator[Prometheus]:
    binary = need("prometheus")
    shipped = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    config = dict(shipped)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(ROOT / "monitoring" / rule) for rule in shipped["rule_files"]]
    # the shipped exporter job (honor_labels and all), pointed at this exporter; no online server here
    [scrape] = config["scrape_configs"] = [s for s in shipped["scrape_configs"] if s["job_name"] == "statsd-exporter"]
    scrape["static_configs"] = [{"targets": [exporter[1].split("/")[2]]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(f"Prometheus ready at {base} (log: {tmp_path / 'prometheus.log'})",
                   lambda: requests.get(f"{base}/-/ready", timeout=2).ok, 60)
        yield Prometheus(base)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def midnight(day: dt.date) -> str:
    return str(int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()))


def test_cli_runs_read_back_from_a_real_prometheus(home: Path, prometheus: Prometheus,
                                                   exporter: tuple[int, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCORING_STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("SCORING_STATSD_PORT", str(exporter[0]))
    later = DAY + dt.timedelta(days=1)
    write_partition(home, DAY, n=600)
    write_partition(home, later, n=600)
    # churn_test: DAY fails (a key column that is not there), then the next day is published
    write_job(home, entity_key="no_such_column")
    failed = scoring_cli("run", "churn_test", "--date", DAY.isoformat())
    assert failed.returncode != 0, failed.stdout + failed.stderr
    write_job(home)
    published = scoring_cli("run", "churn_test", "--date", later.isoformat())
    assert published.returncode == 0, published.stdout + published.stderr
    write_job(home, job_id="other_test")
    assert scoring_cli("run", "other_test", "--date", DAY.isoformat()).returncode == 0
    # a flagged breach: a shifted day published under the flag policy (drift; maybe a quarantine share over 0.01%)
    flagged_day = DAY + dt.timedelta(days=2)
    write_partition(home, flagged_day, n=2000, shift=1.0)
    write_job(home, job_id="other_test", validation={"max_quarantine_share": 0.0001, "on_breach": "flag"})
    flagged = scoring_cli("run", "other_test", "--date", flagged_day.isoformat())
    assert flagged.returncode == 0, flagged.stdout + flagged.stderr
    # a day whose data never came: the row the sensor's give-up writes (pipeline/never_ran.py)
    missing_day = DAY + dt.timedelta(days=3)
    never_ran.record(run.engine(run.find_job("other_test")), job_id="other_test", run_id="scheduled__missing",
                     partition_date=missing_day, outcome="missing", error=f"no data for {missing_day}",
                     mode="persist", dry_run=False, model_name="churn")
    with run.engine(run.find_job("churn_test")).connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM scoring_runs ORDER BY job_id, partition_date")).mappings()]
    [bad, good] = [r for r in rows if r["job_id"] == "churn_test"]
    assert (bad["status"], good["status"]) == ("failed", "success")
    [plain, marked, missing] = [r for r in rows if r["job_id"] == "other_test"]
    assert missing["status"] == "missing" and plain["breach"] is None
    assert "drift" in metrics.breaches(marked), marked["breach"]
    # a count past 999,999 (the old :g format sent 1.23457e+06): the published row with more rows
    metrics.emit_run({**good, "job_id": "big_test", "rows_in": 1_234_567, "rows_scored": 1_234_567})

    wait_until("Prometheus to scrape every job's attempts", lambda: {
        s["metric"]["job"] for s in prometheus.query("scoring_run_attempts_total")} >= {
        "churn_test", "other_test", "big_test"})

    # (a) the scoring job's label survives: one series per job, none renamed exported_job
    by_job = {s["metric"].get("job"): s["value"][1] for s in prometheus.query("max by (job) (scoring_run_status)")}
    assert by_job == {"churn_test": "1", "other_test": "0", "big_test": "1"}  # other_test's latest: missing
    assert prometheus.query('{exported_job!=""}') == []
    # (b) exact values: midnight UTC to the second, counts whole, the end to the second
    assert prometheus.one('scoring_run_partition{job="churn_test",status="success"}') == midnight(later)
    assert prometheus.one('scoring_run_partition{job="churn_test",status="failed"}') == midnight(DAY)
    assert prometheus.one('scoring_run_rows{job="big_test",kind="in"}') == "1234567"
    assert prometheus.one('scoring_run_rows{job="churn_test",kind="written"}') == str(good["rows_written"])
    finished = int(ledger.utc(good["finished_at"]).replace(tzinfo=dt.UTC).timestamp())
    assert prometheus.one('scoring_run_finished_at{job="churn_test",status="success"}') == str(finished)
    # (c) failures do not fade: the latest attempt succeeded, the failed day and the failure are still there
    assert prometheus.one('scoring_run_status{job="churn_test"}') == "1"
    assert prometheus.one(f'scoring_run_attempts_total{{job="churn_test",status="failed",'
                          f'failed_stage="{bad["failed_stage"]}"}}') == "1"
    assert prometheus.one(f'scoring_partition_failed{{job="churn_test",partition="{DAY}"}}') == "1"
    assert prometheus.one(f'scoring_partition_failed{{job="churn_test",partition="{later}"}}') == "0"
    # what never ran leaves a metric too; a flagged breach is counted by kind
    assert prometheus.one('scoring_run_attempts_total{job="other_test",status="missing",'
                          'failed_stage="wait_for_partition"}') == "1"
    assert prometheus.one(f'scoring_partition_failed{{job="other_test",partition="{missing_day}"}}') == "1"
    assert {s["metric"]["breach"]: s["value"][1] for s in prometheus.query(
        'scoring_run_breaches_total{job="other_test"}')} == {b: "1" for b in metrics.breaches(marked)}

    # the shipped alerts fire, each naming the scoring job
    def firing() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for alert in prometheus.alerts():
            if alert["state"] == "firing":
                out.setdefault(alert["labels"]["alertname"], []).append(alert)
        assert {"ScoringRunFailed", "ScoringPartitionNotPublished", "ScoringPartitionStale",
                "ScoringBreachFlagged"} <= set(out), out
        # days of 2026-11: every job's newest published day is more than two days old
        assert {a["labels"]["job"] for a in out["ScoringPartitionStale"]} == {"churn_test", "other_test", "big_test"}
        return out

    alerts = wait_until("the alerts to fire", firing, 60)
    failures = {a["labels"]["job"]: a for a in alerts["ScoringRunFailed"]}
    assert {j: a["labels"]["status"] for j, a in failures.items()} == {
        "churn_test": "failed", "other_test": "missing"}
    assert failures["churn_test"]["annotations"]["summary"].startswith(
        f"churn_test: an attempt ended failed at stage {bad['failed_stage']}")
    assert failures["other_test"]["annotations"]["summary"].startswith(
        "other_test: an attempt ended missing at stage wait_for_partition")
    days = {(a["labels"]["job"], a["labels"]["partition"]): a for a in alerts["ScoringPartitionNotPublished"]}
    assert set(days) == {("churn_test", DAY.isoformat()), ("other_test", missing_day.isoformat())}
    assert days[("churn_test", DAY.isoformat())]["annotations"]["summary"].startswith(
        f"churn_test: partition {DAY} is not published")
    breaches = {a["labels"]["breach"]: a["annotations"]["summary"] for a in alerts["ScoringBreachFlagged"]}
    assert set(breaches) == set(metrics.breaches(marked))
    assert breaches["drift"].startswith("other_test: a partition was published with a drift breach")
    stale = {a["labels"]["job"]: a["annotations"]["summary"] for a in alerts["ScoringPartitionStale"]}
    assert stale["churn_test"].startswith("churn_test: the newest published partition is more than two days old")
    assert not any(a["labels"].get("job") == "statsd-exporter" for a in prometheus.alerts())


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(requests.get(url, timeout=10).text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def wait_for(url: str, name: str, **labels: str) -> dict:
    return wait_until(f"{name} {labels} at {url}", lambda: (
        samples if value(samples := scrape(url), name, **labels) is not None else None), 30)


def test_an_airflow_run_sends_airflows_metrics_and_ours_to_one_exporter(
        home: Path, migrated_home: Path, exporter: tuple[int, str], prometheus: Prometheus,
        monkeypatch: pytest.MonkeyPatch) -> None:
    udp, url = exporter
    statsd = {"AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
              "AIRFLOW__METRICS__STATSD_PORT": str(udp)}
    for name, setting in statsd.items():
        monkeypatch.setenv(name, setting)  # dags_test passes the test's environment on
    write_partition(home, n=900)
    write_job(home)
    out = dags_test(migrated_home, "churn_test", DAY.isoformat())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    samples = wait_for(url, "scoring_run_status", job="churn_test")
    with run.engine(run.find_job("churn_test")).connect() as conn:
        [row] = [dict(r) for r in conn.execute(sa.text("SELECT * FROM scoring_runs WHERE job_id = 'churn_test'"))
                 .mappings()]
    for kind in ("in", "valid", "quarantined", "scored", "written"):
        assert value(samples, "scoring_run_rows", job="churn_test", kind=kind) == row[f"rows_{kind}"], kind
    assert value(samples, "scoring_run_status", job="churn_test", mode="persist") == 1
    assert value(samples, "scoring_run_seconds", job="churn_test", status="success") == pytest.approx(
        row["duration_s"], rel=1e-3)
    stages = ledger.as_json(row["stage_seconds"])
    for stage in ("ingest", "validate", "score", "persist"):
        assert value(samples, "scoring_stage_seconds", job="churn_test", stage=stage) == pytest.approx(
            stages[stage], rel=1e-3)
        assert value(samples, "scoring_stage_rows_per_second", job="churn_test", stage=stage) == pytest.approx(
            row["rows_in"] / stages[stage], rel=1e-3)
    assert value(samples, "scoring_drift_max_psi", job="churn_test") >= 0
    airflow = sorted({n for n, _ in samples if n.startswith("airflow_")})
    assert any("ti" in n or "task" in n for n in airflow), f"Airflow's own metrics reach the same exporter: {airflow}"
    # the mapping: DAG, task and state are labels, no metric name carries the DAG id
    assert not [n for n in airflow if "churn_test" in n], airflow

    def finished() -> set[tuple[str, str]]:
        tasks = {(s["metric"]["task_id"], s["metric"]["state"]) for s in prometheus.query(
            'sum by (dag_id, task_id, state) (airflow_ti_finish_total{dag_id="churn_test"})')}
        assert {(task, "success") for task in ("ingest", "score", "finalize")} <= tasks, tasks
        return tasks

    def timed() -> list[dict]:  # a task's duration is sent apart from its finish: it may come a scrape later
        durations = prometheus.query('sum by (dag_id, task_id) (airflow_task_duration_count{dag_id="churn_test"})')
        assert {s["metric"]["task_id"] for s in durations} >= {"score", "finalize"}, durations
        return durations

    wait_until("Prometheus to scrape Airflow's task metrics, by DAG, task and state", finished)
    wait_until("Prometheus to scrape Airflow's task durations, by DAG and task", timed)
    assert prometheus.one('max by (job) (scoring_run_status{job="churn_test"})') == "1"

    # a failed attempt says so too (here without Airflow: the same code path records every attempt)
    write_job(home, job_id="broken_test", entity_key="no_such_column")
    with pytest.raises(ScoringError):
        local.run_partition(run.find_job("broken_test"), DAY)
    samples = wait_for(url, "scoring_run_status", job="broken_test")
    assert value(samples, "scoring_run_status", job="broken_test") == 0
    assert value(samples, "scoring_run_rows", job="broken_test", kind="in") == 0  # nothing was read

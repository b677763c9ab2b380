"""The online door as Prometheus sees it: a real `scoring serve` on 127.0.0.1, Debian's real Prometheus with the
configuration `scripts/native_stack.py` writes (the shipped scrape job and alerts, this door as its target).

Requests answered 200, 401 and 422 are counted by code with the scoring job in `job` (no `exported_job`), the
served version and readiness come through, the latency histogram gives a quantile, every online rule evaluates
without error and none fires while the door is healthy; stopped, the door's scrape fails and OnlineServerDown
is pending, labelled with the scrape job.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.registry import Registry
from tests.conftest import clean_customers, write_job
from tests.e2e.conftest import free_port
from tests.e2e.test_metrics import Prometheus, wait_until
from tests.integration.test_stack_anchors import _native_stack
from tests.prometheus_bin import need

pytestmark = [pytest.mark.slow]

TOKEN = "tok-prometheus-3c1d9e7a"
SCORING = str(Path(sys.executable).parent / "scoring")


@pytest.fixture
def door(home: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Prometheus]]:
    """`scoring serve churn_test` on a free port of 127.0.0.1 with a tokens file, and Debian's Prometheus on the
    native stack's configuration for it, scraping and evaluating every second (both started at once, then
    waited for): (the door's process, its URL, Prometheus)."""
    binary = need("prometheus")
    write_job(home)
    tokens = tmp_path / "serve_tokens"
    tokens.write_text(f"{TOKEN}\n")
    tokens.chmod(0o600)
    port, web = free_port(), free_port()
    config = yaml.safe_load(_native_stack().prometheus_config(None, f"127.0.0.1:{port}"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("serve", "prometheus")}  # noqa: SIM115
    serve = subprocess.Popen([SCORING, "serve", "churn_test", "--port", str(port), "--tokens-file", str(tokens)],
                             stdout=logs["serve"], stderr=subprocess.STDOUT, env=dict(os.environ))
    prometheus = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                                  stdout=logs["prometheus"], stderr=subprocess.STDOUT)
    url, base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{web}"
    try:
        wait_until(f"Prometheus ready at {base} (log: {tmp_path / 'prometheus.log'})",
                   lambda: requests.get(f"{base}/-/ready", timeout=2).ok, 60)
        wait_until(f"scoring serve ready at {url} (log: {tmp_path / 'serve.log'})",
                   lambda: serve.poll() is None and requests.get(f"{url}/health/ready", timeout=2).ok, 60)
        yield serve, url, Prometheus(base)
    finally:
        for proc in (serve, prometheus):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        for log in logs.values():
            log.close()


def test_prometheus_scrapes_the_online_door_and_evaluates_its_alerts(
        door: tuple[subprocess.Popen, str, Prometheus]) -> None:
    proc, url, prometheus = door
    row = json.loads(clean_customers(1).to_json(orient="records"))[0]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(3):
        assert requests.post(f"{url}/v1/jobs/churn_test:score", json=row, headers=auth, timeout=30).status_code == 200
    assert requests.post(f"{url}/v1/jobs/churn_test:score", json=row, timeout=30).status_code == 401
    bad = {**row, "monthly_charges": -1.0}  # below the contract's minimum: a single quarantined row
    assert requests.post(f"{url}/v1/jobs/churn_test:score", json=bad, headers=auth, timeout=30).status_code == 422

    def counted() -> dict[str, str]:
        codes = {s["metric"]["code"]: s["value"][1] for s in prometheus.query(
            'scoring_online_requests_total{job="churn_test"}')}
        assert codes == {"200": "3", "401": "1", "422": "1"}, codes
        return codes

    wait_until("Prometheus to scrape the door's counts", counted, 30)
    assert prometheus.query('{exported_job!=""}') == [], "the scoring job stays in `job`"
    assert prometheus.one('scoring_online_ready{job="churn_test"}') == "1"
    assert prometheus.one('up{job="scoring-online"}') == "1"
    champion = Registry().resolve("churn", "champion").version
    assert prometheus.one('scoring_online_model_version{job="churn_test",model="churn"}') == str(champion)
    assert {s["metric"]["outcome"]: s["value"][1] for s in prometheus.query(
        'scoring_online_rows_total{job="churn_test"}')} == {"scored": "3", "quarantined": "1"}
    p99 = prometheus.one('histogram_quantile(0.99, sum by (job, le) '
                         '(scoring_online_request_seconds_bucket{job="churn_test"}))')
    assert 0 < float(p99) <= 2.5
    # the shipped online rules all evaluate (a wrong name or label would still be "ok": the values above say
    # the names are right) and none fires on a healthy door
    groups = requests.get(f"{prometheus.base}/api/v1/rules", timeout=10).json()["data"]["groups"]
    [online] = [g for g in groups if g["name"] == "scoring-online"]
    assert len(online["rules"]) == 8 and {r["health"] for r in online["rules"]} == {"ok"}, online["rules"]

    def quiet() -> bool:
        online = [a for a in prometheus.alerts() if a["labels"]["alertname"].startswith("Online")]
        assert not online, online
        return True

    # Prometheus scraped before the door listened: OnlineServerDown may be pending until a rule evaluation sees
    # the door up; it must clear, and nothing else may fire on a healthy door
    wait_until("no online alert on a healthy door", quiet, 30)

    proc.send_signal(signal.SIGTERM)  # stopped: its scrape fails and the rule that sees it is pending
    assert proc.wait(timeout=60) == 0

    def pending() -> list[dict]:
        found = [a for a in prometheus.alerts() if a["labels"]["alertname"] == "OnlineServerDown"]
        assert found and found[0]["state"] == "pending", found
        return found

    [down] = wait_until("OnlineServerDown pending", pending, 30)
    assert down["labels"]["job"] == "scoring-online" and down["labels"]["instance"] == url.removeprefix("http://")

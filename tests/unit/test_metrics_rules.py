"""The shipped Prometheus files pass Prometheus's own checks, here as in the container: promtool check config,
the alert unit tests (promtool test rules, one test group per alert), and every dashboard query parses."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from tests.conftest import script_module
from tests.prometheus_bin import need

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"


def promtool(*argv: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run([need("promtool"), *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_shipped_config_and_its_rule_file() -> None:
    # run from elsewhere: the rule file resolves beside prometheus.yml, not in the working directory
    out = promtool("check", "config", str(MONITORING / "prometheus.yml"), cwd=Path("/"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_every_alert_has_a_unit_test_that_fires_it_and_names_the_job() -> None:
    out = promtool("test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    alerts = [r["alert"] for g in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
              for r in g["rules"] if "alert" in r]
    tests = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())["tests"]
    fired = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            for alert in check["exp_alerts"]:
                fired.setdefault(check["alertname"], []).append(alert)
    assert set(fired) == set(alerts), f"alerts without a test that fires them: {set(alerts) - set(fired)}"
    quiet = {check["alertname"] for case in tests for check in case.get("alert_rule_test", []) if not check["exp_alerts"]}
    assert quiet == set(alerts), f"alerts without a test where they stay quiet: {set(alerts) - quiet}"
    for name, expected in fired.items():
        for alert in expected:
            job = alert["exp_labels"]["job"]
            assert job != "statsd-exporter" and alert["exp_annotations"]["summary"].startswith(f"{job}:"), name


def test_the_native_stacks_prometheus_config_scrapes_its_exporter_and_door_with_the_shipped_alerts(
        tmp_path: Path) -> None:
    stack = script_module("native_stack")
    shipped = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    for serve, jobs in (("127.0.0.1:8081", ["statsd-exporter", "scoring-online"]), (None, ["statsd-exporter"])):
        (tmp_path / "prometheus.yml").write_text(stack.prometheus_config("127.0.0.1:9102", serve))
        config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
        assert [j["job_name"] for j in config["scrape_configs"]] == jobs
        assert config["scrape_configs"][-1]["static_configs"] == [{"targets": [serve or "127.0.0.1:9102"]}]
        assert all(j["honor_labels"] for j in config["scrape_configs"]) and config["global"] == shipped["global"]
        assert config["rule_files"] == [str(MONITORING / "alerts.yml")]
        out = promtool("check", "config", str(tmp_path / "prometheus.yml"), cwd=Path("/"))
        assert out.returncode == 0, out.stdout + out.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "scoring.json").read_text())
    rules = [{"record": f"panel_{p['id']}_{t['refId']}", "expr": re.sub(r"\$job\b", ".*", t["expr"])}
             for p in dashboard["panels"] for t in p.get("targets", [])]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    out = promtool("check", "rules", str(tmp_path / "panels.yml"))
    assert out.returncode == 0, out.stdout + out.stderr

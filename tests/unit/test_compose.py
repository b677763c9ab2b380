"""docker-compose.yml is valid Compose (checked by the compose-spec parser) and holds no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docker-compose.yml").read_text()


def _resolved() -> dict:
    # PyYAML applies the `<<` merge keys as docker compose does; x- fragments are then unused
    doc = yaml.safe_load(TEXT)
    return {k: v for k, v in doc.items() if not k.startswith("x-")}


def test_compose_file_is_valid() -> None:
    compose = PyCompose.from_json(json.dumps(_resolved()))
    assert set(compose.service_names()) == {
        "postgres", "redis", "airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker",
        "statsd-exporter", "prometheus", "grafana",
    }


def test_validator_rejects_a_broken_file() -> None:
    doc = _resolved()
    doc["services"]["worker"]["restart"] = "sometimes"
    with pytest.raises(ValueError, match="unknown variant"):
        PyCompose.from_json(json.dumps(doc))


def test_celery_stack_and_no_default_secrets() -> None:
    services = _resolved()["services"]
    env = services["scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD"):
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", env[key]), f"{key} must come from .env"
    required = set(re.findall(r"\$\{([A-Z_]+):\?", TEXT))
    example = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required <= example, f".env.example lacks {required - example}"


def test_monitoring_takes_airflows_metrics_and_ours_and_the_dashboard_loads() -> None:
    services = _resolved()["services"]
    env = services["worker"]["environment"]
    assert env["AIRFLOW__METRICS__STATSD_ON"] == "True" and env["AIRFLOW__METRICS__STATSD_HOST"] == "statsd-exporter"
    command = services["statsd-exporter"]["command"]
    assert "--statsd.listen-udp=:9125" in command
    mounts: dict[str, dict[str, str]] = {}
    for service in ("statsd-exporter", "prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{service} mounts {source}, which is not in the repo"
                mounts.setdefault(service, {})[target] = source
    # the exporter reads the mapping file the compose stack mounts (the stand-in reads the same file)
    [mapping] = [c.split("=", 1)[1] for c in command if c.startswith("--statsd.mapping-config=")]
    assert mounts["statsd-exporter"][mapping] == "./monitoring/statsd_mapping.yml"
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["statsd-exporter:9102"]
    assert scrape["scrape_configs"][0]["honor_labels"] is True, "the scoring job's `job` label must survive"
    # rule files are relative to prometheus.yml: in the container they resolve beside it, to the mounted file
    config_dir = Path(next(t for t, s in mounts["prometheus"].items() if s == "./monitoring/prometheus.yml")).parent
    for rule_file in scrape["rule_files"]:
        assert not Path(rule_file).is_absolute() and (ROOT / "monitoring" / rule_file).exists(), rule_file
        assert mounts["prometheus"][str(config_dir / rule_file)] == f"./monitoring/{rule_file}"
    for rule in yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"][0]["rules"]:
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
    datasource = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/scoring.json").read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid and all(t["datasource"]["uid"] == uid for t in panel["targets"])
    from pipeline import metrics

    emitted = {name.replace(".", "_") for name in re.findall(r"``(scoring\.[a-z_.]+)``", metrics.__doc__ or "")}
    assert emitted and all(name in exprs for name in emitted), emitted - set(re.findall(r"scoring_[a-z_]+", exprs))
    assert "airflow_" in exprs, "Airflow's own metrics are on the board too"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# the parts of Grafana's dashboard model (https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/
# view-dashboard-json-model/) that provisioning reads: a dashboard that fails this does not load
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "panels", "schemaVersion"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 30},
        "templating": {"type": "object", "properties": {"list": {"type": "array", "items": {
            "type": "object", "required": ["name", "type"]}}}},
        "panels": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos", "targets", "datasource"],
            "properties": {
                "id": {"type": "integer"},
                "type": {"enum": ["stat", "timeseries", "table", "gauge", "bargauge", "text"]},
                "gridPos": {"type": "object", "required": ["x", "y", "w", "h"], "properties": {
                    "x": {"type": "integer", "minimum": 0, "maximum": 23},
                    "w": {"type": "integer", "minimum": 1, "maximum": 24},
                    "y": {"type": "integer", "minimum": 0}, "h": {"type": "integer", "minimum": 1}}},
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr"]}},
            },
        }},
    },
}

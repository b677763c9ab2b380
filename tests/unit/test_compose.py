"""docker-compose.yml is valid Compose (checked by the compose-spec parser) and holds no secrets."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from compose_spec import PyCompose

from pipeline.serve import metrics as online_metrics

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docker-compose.yml").read_text()


def _resolved(defaults: bool = True) -> dict:
    # PyYAML applies the `<<` merge keys as docker compose does; x- fragments are then unused. With ``defaults``,
    # ${VAR:-default} becomes its default, as compose reads it with VAR unset (the parser checks the value)
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", TEXT) if defaults else TEXT
    doc = yaml.safe_load(text)
    return {k: v for k, v in doc.items() if not k.startswith("x-")}


def test_compose_file_is_valid() -> None:
    compose = PyCompose.from_json(json.dumps(_resolved()))
    assert set(compose.service_names()) == {
        "postgres", "redis", "airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker",
        "statsd-exporter", "prometheus", "grafana", "scoring-serve",
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
    for group in yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
    datasource = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/scoring.json").read_text())
    jsonschema.validate(dashboard, DASHBOARD_SCHEMA)
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid and all(t["datasource"]["uid"] == uid for t in panel["targets"])
    from pipeline import metrics

    emitted = {name.replace(".", "_") for name in re.findall(r"``(scoring\.[a-z_.]+)``", metrics.__doc__ or "")}
    assert emitted and all(name in exprs for name in emitted), emitted - set(re.findall(r"scoring_[a-z_]+", exprs))
    assert "airflow_" in exprs, "Airflow's own metrics are on the board too"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = [(x, y) for p in dashboard["panels"] for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len(cells) == len(set(cells)), "two panels overlap"
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in dashboard["panels"])


def test_the_dashboards_online_row_shows_every_metric_the_online_door_serves() -> None:
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/scoring.json").read_text())
    [row] = [p for p in dashboard["panels"] if p["type"] == "row" and p["title"] == "Online door"]
    below = [p for p in dashboard["panels"] if p["gridPos"]["y"] > row["gridPos"]["y"]]
    assert below and not [p for p in below if p["type"] == "row"], "the online row is the last one"
    exprs = [t["expr"] for p in below for t in p["targets"]]
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs for n in re.findall(r"\bscoring_online_[a-z_]+", e)}
    served = online_metric_names()
    assert used == served, f"on the board but not served: {used - served}; served but not shown: {served - used}"
    assert all('job=~"$job"' in e for e in exprs), "every online panel follows the job selector"
    [variable] = dashboard["templating"]["list"]
    assert "scoring_online_requests_total" in variable["query"], "a job that is only served online is listed too"


def test_the_dashboards_ab_row_shows_each_arms_rows_and_fallbacks() -> None:
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/scoring.json").read_text())
    rows = sorted((p["gridPos"]["y"], p["title"]) for p in dashboard["panels"] if p["type"] == "row")
    [(top, _)] = [r for r in rows if r[1] == "A/B arms"]
    bottom = min([y for y, _ in rows if y > top], default=10**6)
    exprs = [t["expr"] for p in dashboard["panels"] if top < p["gridPos"]["y"] < bottom for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\bscoring_ab_[a-z_]+", e)}
    assert used == {"scoring_ab_rows", "scoring_ab_fallback_rows_total"}, used
    assert all('job=~"$job"' in e for e in exprs), "every A/B panel follows the job selector"


def test_the_online_alerts_use_only_metrics_the_door_serves() -> None:
    [group] = [g for g in yaml.safe_load((ROOT / "monitoring" / "alerts.yml").read_text())["groups"]
               if g["name"] == "scoring-online"]
    used = {re.sub(r"_(bucket|sum|count)$", "", n) for r in group["rules"]
            for n in re.findall(r"\bscoring_online_[a-z_]+", r["expr"])}
    assert used and used <= online_metric_names(), used - online_metric_names()
    assert all(r["alert"].startswith("Online") for r in group["rules"])


def online_metric_names() -> set[str]:
    """The names ``scoring serve`` puts on GET /metrics, as its metrics module lists them (a histogram by its base
    name, counters with ``_total``)."""
    names = set(re.findall(r"``(scoring_online_[a-z_]+)", online_metrics.__doc__ or ""))
    assert len(names) == 13, names
    return names


def test_the_online_door_runs_the_pipelines_image_with_its_tokens_as_a_secret_on_loopback_only() -> None:
    doc = _resolved(defaults=False)
    serve = doc["services"]["scoring-serve"]
    workers = doc["services"]["worker"]
    assert serve["image"] == workers["image"] and serve["build"] == workers["build"] == "."
    # as the owner of the tokens file (AIRFLOW_UID in .env), in group 0 as the image wants an arbitrary user
    assert serve["user"] == "${AIRFLOW_UID:-50000}:0" and "AIRFLOW_UID=" in (ROOT / ".env.example").read_text()
    command = serve["command"]
    assert serve["entrypoint"][-1] == "scoring" and command[:2] == ["serve", "churn_daily"]
    assert (ROOT / "dags" / "jobs" / f"{command[1]}.yaml").exists(), "the demo job the image carries"
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options == {"--host": "0.0.0.0", "--port": "8080", "--tokens-file": "/run/secrets/scoring_serve_tokens"}
    # the tokens: a file secret whose path comes from .env with a default git ignores; none in the repository
    assert serve["secrets"] == ["scoring_serve_tokens"]
    secret = doc["secrets"]["scoring_serve_tokens"]["file"]
    default = re.fullmatch(r"\$\{SERVE_TOKENS_FILE:-(\./[^}]+)\}", secret)
    assert default, secret
    ignored = subprocess.run(["git", "check-ignore", "-q", default[1]], cwd=ROOT)
    assert ignored.returncode == 0, f"{default[1]} must be ignored by git: it holds the bearer tokens"
    tracked = subprocess.run(["git", "ls-files", "secrets"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked in ([], ["secrets/.gitignore"]), tracked
    assert "SERVE_TOKENS_FILE" in (ROOT / ".env.example").read_text()
    env = serve["environment"]
    assert re.fullmatch(r"postgresql://scoring:\$\{SCORING_DB_PASSWORD:\?[^}]+\}@postgres:5432/scoring",
                        env["AIRFLOW_CONN_SCORING_DB"]), "the workers' scoring database, its password from .env"
    assert not {k for k in env if "FERNET" in k or "JWT" in k or k.startswith("AIRFLOW__")}, "no Airflow secrets"
    # ready only with a verified model; waits for the database; the workers' models and dead-letter folder
    test = serve["healthcheck"]["test"]
    assert test[0] == "CMD" and test[-1] == "http://127.0.0.1:8080/health/ready" and "--fail" in test
    assert serve["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "shared:/shared" in serve["volumes"] and "shared:/shared" in workers["volumes"]
    for folder in ("SCORING_MODELS_DIR", "SCORING_DEADLETTER_DIR"):
        assert env[folder] == workers["environment"][folder] and env[folder].startswith("/shared/"), folder
    # the volume is filled from the image's /shared, writable by group root (the door's group, whatever its uid)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "chown -R airflow:root /shared && chmod -R 2775 /shared" in dockerfile
    assert serve["stop_grace_period"] == "30s", "time to finish requests and write the queued records"
    # published to this machine only; on the project's own network
    assert serve["ports"] == ["127.0.0.1:8081:8080"]
    assert "network_mode" not in serve and "networks" not in serve
    for name, service in doc["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    # Prometheus scrapes it by its service name, keeping the scoring job's `job` label
    scrape = {s["job_name"]: s for s in yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())[
        "scrape_configs"]}
    assert scrape["scoring-online"]["static_configs"][0]["targets"] == ["scoring-serve:8080"]
    assert scrape["scoring-online"]["honor_labels"] is True


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
            "required": ["id", "type", "title", "gridPos"],
            "properties": {
                "id": {"type": "integer"},
                "type": {"enum": ["stat", "timeseries", "table", "gauge", "bargauge", "text", "row"]},
                "gridPos": {"type": "object", "required": ["x", "y", "w", "h"], "properties": {
                    "x": {"type": "integer", "minimum": 0, "maximum": 23},
                    "w": {"type": "integer", "minimum": 1, "maximum": 24},
                    "y": {"type": "integer", "minimum": 0}, "h": {"type": "integer", "minimum": 1}}},
                "targets": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["refId", "expr"]}},
            },
            # a row (expanded) is a full-width header one unit high; its panels follow it in the list
            "if": {"properties": {"type": {"const": "row"}}},
            "then": {"required": ["collapsed", "panels"], "not": {"required": ["targets"]}, "properties": {
                "collapsed": {"const": False}, "panels": {"maxItems": 0},
                "gridPos": {"properties": {"x": {"const": 0}, "w": {"const": 24}, "h": {"const": 1}}}}},
            "else": {"required": ["targets", "datasource"]},
        }},
    },
}

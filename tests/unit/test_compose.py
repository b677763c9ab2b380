"""docker-compose.yml is valid Compose (checked by the compose-spec parser) and holds no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

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

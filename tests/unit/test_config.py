from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import job_json_schema, load_job, load_jobs
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "job_id": "churn_x",
    "start_date": "2026-11-01",
    "entity_key": "customer_id",
    "source": {"path": "data/churn"},
    "model": {"name": "churn", "ref": 2},
    "output": {"table": "churn_x_predictions"},
}


def _write(tmp_path: Path, doc: dict, name: str = "churn_x") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_shipped_job_loads() -> None:
    job = load_job(ROOT / "dags" / "jobs" / "churn_daily.yaml")
    assert job.job_id == "churn_daily"
    assert job.output.table == "churn_predictions"
    assert job.validation.max_quarantine_share == 0.05


def test_defaults_and_int_model_ref(tmp_path: Path) -> None:
    job = load_job(_write(tmp_path, GOOD))
    assert job.model.ref == "2"
    assert job.schedule == "0 2 * * *"
    assert job.retries == 2


def test_typo_names_file_key_and_allowed_values(tmp_path: Path) -> None:
    doc = dict(GOOD, source={"path": "data", "fromat": "csv"})
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_job(path)
    text = str(err.value)
    assert str(path) in text
    assert "'source.fromat'" in text
    assert "did you mean 'format'" in text
    assert "batch_rows" in text and "layout" in text  # the allowed keys are listed


def test_bad_enum_lists_allowed_values(tmp_path: Path) -> None:
    path = _write(tmp_path, dict(GOOD, source={"path": "d", "format": "xlsx"}))
    with pytest.raises(ConfigError, match=r"source\.format.*'parquet' or 'csv'"):
        load_job(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule": "every night"}, "not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"output": {"table": "x; DROP TABLE y"}}, "not allowed"),
        ({"validation": {"max_quarantine_share": 1.5}}, "max_quarantine_share"),
        ({"entity_key": None}, "entity_key"),
    ],
)
def test_invalid_values(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(_write(tmp_path, {**GOOD, **change}))


def test_job_id_must_match_file_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must match the file name"):
        load_job(_write(tmp_path, GOOD, name="other"))


def test_broken_file_does_not_hide_others(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    (tmp_path / "broken.yaml").write_text("job_id: [unclosed\n")
    loaded = load_jobs(tmp_path)
    assert list(loaded.jobs) == ["churn_x"]
    assert "not valid YAML" in loaded.errors[tmp_path / "broken.yaml"]


def test_published_schema_is_current() -> None:
    published = json.loads((ROOT / "pipeline" / "job.schema.json").read_text())
    assert published == job_json_schema(), "run `make schema` and commit pipeline/job.schema.json"

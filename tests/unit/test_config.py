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


@pytest.mark.parametrize("name", ["../..", "../other/churn", "/srv/models/churn", "churn/v1", "Churn", "churn.v2"])
def test_a_model_name_is_an_identifier_never_a_path(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, {**GOOD, "model": {"name": name}})
    with pytest.raises(ConfigError) as err:
        load_job(path)
    text = str(err.value)
    assert str(path) in text and "'model.name'" in text and f"model name {name!r} is not allowed" in text
    assert "never by a path" in text


def test_a_table_name_must_leave_room_for_its_views_and_index(tmp_path: Path) -> None:
    longest = "p" * 56  # + '_by_key' / '_latest' = 63 bytes, PostgreSQL's limit
    assert load_job(_write(tmp_path, {**GOOD, "output": {"table": longest}})).output.table == longest
    path = _write(tmp_path, {**GOOD, "output": {"table": longest + "x"}})
    with pytest.raises(ConfigError) as err:
        load_job(path)
    text = str(err.value)
    assert str(path) in text and "'output.table'" in text and "is 57 characters" in text
    assert f"'{longest}x_latest'" in text and f"'{longest}x_by_key'" in text and "at most 56 characters" in text


def test_jobs_check_reports_names_that_would_fail_only_at_persist(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import cli

    _write(tmp_path, {**GOOD, "output": {"table": "t" * 63}})
    _write(tmp_path, {**GOOD, "job_id": "churn_y", "model": {"name": "../../etc"}}, name="churn_y")
    assert cli.main(["jobs", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"ERROR\t{tmp_path / 'churn_x.yaml'}" in err and "at most 56 characters" in err
    assert f"ERROR\t{tmp_path / 'churn_y.yaml'}" in err and "model name '../../etc' is not allowed" in err


@pytest.mark.parametrize(("source", "message"), [
    ({"path": "d", "ignore": ["sub/*.json"]}, "is not a file name glob"),
    ({"path": "d", "ignore": [""]}, "is not a file name glob"),
    ({"path": "d", "layout": "../date={date}"}, "without '..'"),
    ({"path": "d", "layout": "/abs/{date}"}, "without '..' or a leading '/'"),
])
def test_source_ignore_and_layout_stay_inside_the_partition_folders(tmp_path: Path, source: dict,
                                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_job(_write(tmp_path, {**GOOD, "source": source}))


def test_source_ignore_is_a_list_of_globs(tmp_path: Path) -> None:
    job = load_job(_write(tmp_path, {**GOOD, "source": {"path": "d", "ignore": ["*.json", "README*"]}}))
    assert job.source.ignore == ["*.json", "README*"]


def test_the_typo_message_in_the_docs_is_the_one_a_typo_gets(tmp_path: Path) -> None:
    """docs/job-files.md quotes the message of a misspelt key: it is what loading the shipped job with that typo says."""
    from tests.conftest import ROOT

    doc = yaml.safe_load((ROOT / "dags" / "jobs" / "churn_daily.yaml").read_text())
    doc["source"]["fromat"] = doc["source"].pop("format")
    (tmp_path / "churn_daily.yaml").write_text(yaml.safe_dump(doc))
    [error] = load_jobs(tmp_path).errors.values()
    said = str(error).replace(str(tmp_path), "dags/jobs")
    quoted = next(line for line in (ROOT / "docs" / "job-files.md").read_text().splitlines() if "'source.fromat'" in line)
    assert quoted.strip() in said, f"docs/job-files.md quotes\n{quoted.strip()}\nbut the message is\n{said}"

"""Job files: one YAML file per scoring job, validated at load time.

A job file names the source, the entity key, the model, the output and the schedule.
Every key is documented in the README; the JSON schema is published as
``pipeline/job.schema.json`` (regenerate with ``scoring jobs schema``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.errors import ConfigError

IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def project_home() -> Path:
    """Root that relative paths in job files are resolved against (``SCORING_HOME``)."""
    env = os.environ.get("SCORING_HOME")
    return Path(env) if env else Path(__file__).resolve().parents[1]


def jobs_dir() -> Path:
    """Folder of job files (``SCORING_JOBS_DIR``, default ``<home>/dags/jobs``)."""
    env = os.environ.get("SCORING_JOBS_DIR")
    return Path(env) if env else project_home() / "dags" / "jobs"


def check_identifier(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a safe lower-case SQL identifier, else raise ConfigError."""
    if not IDENTIFIER_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not allowed: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the daily partitions are read from."""

    kind: Literal["files"] = Field("files", description="Source kind: a directory of files laid out by date.")
    path: str = Field(..., description="Directory (relative to SCORING_HOME) or absolute path holding the partitions.")
    format: Literal["parquet", "csv"] = Field("parquet", description="File format of the partition's files.")
    layout: str = Field(
        "date={date}",
        description="Sub-directory of one partition below `path`; `{date}` is replaced by YYYY-MM-DD.",
    )
    wait_timeout_minutes: float = Field(
        360, gt=0, description="How long wait_for_partition waits for the partition before failing."
    )
    poke_interval_seconds: float = Field(
        300, gt=0, description="How often wait_for_partition looks for the partition (reschedule mode)."
    )
    batch_rows: int = Field(
        250_000, gt=0, description="Rows per record batch in every stage; bounds memory."
    )

    @field_validator("layout")
    @classmethod
    def _layout_has_date(cls, value: str) -> str:
        if "{date}" not in value:
            raise ValueError("layout must contain '{date}', e.g. 'date={date}'")
        return value


class ModelRef(_Strict):
    """Which registered model scores the job."""

    name: str = Field(..., description="Model name in the registry (a folder of models/).")
    ref: str = Field(
        "champion",
        description="Version number (e.g. '3') or alias (e.g. 'champion') to score with.",
    )

    @field_validator("ref", mode="before")
    @classmethod
    def _ref_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class OutputConfig(_Strict):
    """Where predictions go."""

    mode: Literal["persist"] = Field("persist", description="Output mode: 'persist' writes a SQL table.")
    connection: str = Field(
        "scoring_db",
        description="Airflow connection id (or AIRFLOW_CONN_<ID> env var) of the output database.",
    )
    table: str = Field(..., description="Predictions table (lower-case SQL identifier).")

    @field_validator("table", "connection")
    @classmethod
    def _identifier(cls, value: str) -> str:
        check_identifier(value, "name")
        return value


class ValidationConfig(_Strict):
    """How strict validation is."""

    max_quarantine_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of rows that may be quarantined; above it the run fails and publishes nothing.",
    )


class JobConfig(_Strict):
    """One scoring job: one DAG."""

    job_id: str = Field(..., description="DAG id and job name (lower-case identifier).")
    description: str = Field("", description="One line shown in the Airflow UI.")
    owner: str = Field("ml-platform", description="Owner shown in the Airflow UI.")
    tags: list[str] = Field(default_factory=list, description="Extra DAG tags ('scoring' is always added).")
    schedule: str | None = Field(
        "0 2 * * *",
        description="Cron expression of the nightly run in `timezone`, or null for manual runs only.",
    )
    timezone: str = Field("UTC", description="IANA time zone of the schedule and of partition dates.")
    start_date: dt.date = Field(..., description="First partition the scheduler may run (YYYY-MM-DD).")
    catchup: bool = Field(False, description="Let the scheduler create runs for missed intervals.")
    retries: int = Field(2, ge=0, le=10, description="Task retries before a task fails.")
    retry_delay_minutes: float = Field(5, ge=0, description="Wait between task retries.")
    entity_key: str = Field(..., description="Column identifying one entity; one prediction per entity per day.")
    source: SourceConfig
    model: ModelRef
    output: OutputConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @field_validator("job_id", "entity_key")
    @classmethod
    def _identifier(cls, value: str) -> str:
        check_identifier(value, "name")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like 'Europe/Paris')") from exc
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (e.g. '0 2 * * *')")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source_root(self) -> Path:
        """Absolute directory holding the partitions."""
        path = Path(self.source.path)
        return path if path.is_absolute() else project_home() / path


def _format_error(path: Path, err: dict[str, Any], model: type[BaseModel]) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) or "(top level)"
    message = err["msg"]
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        hint = difflib.get_close_matches(loc[-1], allowed, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else ""
        return f"{path}: unknown key {key!r}{did_you_mean} Allowed keys here: {', '.join(sorted(allowed))}"
    if err["type"] == "missing":
        return f"{path}: required key {key!r} is missing"
    return f"{path}: key {key!r}: {message} (got {err.get('input')!r})"


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        field = current.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(
            field.annotation, BaseModel
        ):
            return list(current.model_fields)
        current = field.annotation
    return list(current.model_fields)


def parse_job(data: Any, path: Path) -> JobConfig:
    """Validate the parsed YAML of one job file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a job file must be a mapping of keys, got {type(data).__name__}")
    try:
        job = JobConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(path, e, JobConfig) for e in exc.errors()]
        raise ConfigError("invalid job file:\n  " + "\n  ".join(lines)) from None
    if path.stem != job.job_id:
        raise ConfigError(
            f"{path}: job_id {job.job_id!r} must match the file name ({path.stem!r}.yaml) "
            "so that each file makes exactly one DAG"
        )
    return job


def load_job(path: str | Path) -> JobConfig:
    """Read and validate one job file; raise ConfigError naming the file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read job file: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_job(data, path)


@dataclass(frozen=True)
class JobLoad:
    """Result of loading a folder of job files: good jobs and per-file errors."""

    jobs: dict[str, JobConfig]
    errors: dict[Path, str]


def load_jobs(folder: str | Path) -> JobLoad:
    """Load every ``*.yaml`` job file of a folder; one broken file never hides the others."""
    jobs: dict[str, JobConfig] = {}
    errors: dict[Path, str] = {}
    for path in sorted(Path(folder).glob("*.y*ml")):
        try:
            job = load_job(path)
        except ConfigError as exc:
            errors[path] = str(exc)
            continue
        jobs[job.job_id] = job
    return JobLoad(jobs, errors)


def job_json_schema() -> dict[str, Any]:
    """JSON schema of a job file."""
    schema = JobConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Scoring job file"
    return schema

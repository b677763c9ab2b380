"""Job files: one YAML file per scoring job, validated at load time.

A job file names the source, the entity key, the model, the output and the schedule.
Every key is documented in the README; the JSON schema is published as
``pipeline/job.schema.json`` (regenerate with ``scoring jobs schema``).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline import settings
from pipeline.errors import ConfigError
from pipeline.sqltext import check_query

IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The predictions table's own columns besides the entity key (sql/010_predictions.sql; the
# store re-exports this list): an entity key may not take one of these names.
PREDICTION_COLUMNS = [
    "partition_date",
    "prediction",
    "score",
    "model_name",
    "model_version",
    "run_id",
    "scored_at",
    "flags",
    "route",  # cascade lineage (pipeline.cascade); NULL for one-model jobs
    "router_model",
    "router_version",
    "arm",  # model.split: the row's arm (pipeline.ab); NULL for a job without split
]
# Names a column of the input may not have because a stage adds a column of that name beside
# it: validation's quarantine file adds 'reasons' to the input's columns; the entity key also
# sits beside the predictions table's columns and, in push mode, the 'rank' of a top_n.
RESERVED_INPUT_NAMES = frozenset(["reasons"])
RESERVED_KEY_NAMES = frozenset([*PREDICTION_COLUMNS, *RESERVED_INPUT_NAMES, "rank"])
MAX_NAME_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated
# Names the store derives from output.table (store.ensure_predictions: the analyst views and the
# index); each must fit in MAX_NAME_BYTES as well, or the views would be truncated onto each other.
TABLE_DERIVED = ("_latest", "_daily", "_by_key")
SHADOW_DERIVED = ("_shadow", "_compare")  # with model.challengers (pipeline.shadow)


def check_identifier(value: str, what: str = "identifier") -> str:
    """Return ``value`` if it is a safe lower-case SQL identifier, else raise ConfigError."""
    if not IDENTIFIER_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not allowed: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters"
        )
    return value


def check_column_name(value: Any, what: str = "column", fix: str | None = None, *,
                      reserved: frozenset[str] = RESERVED_KEY_NAMES) -> str:
    """Return ``value`` if it can name a column of the input and of the output tables, else raise ConfigError.

    Any name a file can have is accepted (mixed case, spaces, punctuation, any script): the
    store quotes it with the database's identifier preparer. Refused: an empty name, more
    than 63 bytes in UTF-8, NUL or other control characters, a leading ``__`` (the
    pipeline's own columns, such as ``__raw__<column>`` and ``__flags``) and the names of
    the columns a stage adds beside it (``reserved``; for an entity key, the predictions
    table's own columns), compared without case as SQLite compares identifiers.

    Args:
        what: the job-file or card key the name came from, e.g. ``entity_key``; it starts the message.
        fix: what to do about it (default: rename the column upstream or with ``source.rename``).
        reserved: lower-case names refused; ``RESERVED_INPUT_NAMES`` for a column of the model's input
            contract (which never goes into the predictions table).
    """
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} {value!r} is not allowed: a column name must be a non-empty string")
    problem = None
    size = len(value.encode("utf-8"))
    control = sorted({f"U+{ord(ch):04X}" for ch in value if unicodedata.category(ch) == "Cc"})
    if size > MAX_NAME_BYTES:
        problem = f"it is {size} bytes long in UTF-8; PostgreSQL allows at most {MAX_NAME_BYTES}"
    elif control:
        problem = f"it holds control character(s) {', '.join(control)} (tabs, newlines, NUL...)"
    elif value.startswith("__"):
        problem = "names starting with '__' are reserved for the pipeline's own columns (e.g. __raw__x, __flags)"
    elif value.casefold() in reserved:
        problem = ("the pipeline adds a column of that name beside it (reserved: "
                   f"{', '.join(sorted(reserved))}; compared without case)")
    if problem:
        raise ConfigError(f"{what} {value!r} is not allowed: {problem}. " + (fix or (
            "Rename the column in the export, or map it to another name with source.rename in the job file")))
    return value


def _connection_id(value: str | None) -> str | None:
    """An optional Airflow connection id, validated like every identifier."""
    if value is not None:
        check_identifier(value, "connection id")
    return value


def _marker_texts(value: Any, key: str) -> Any:
    """A list of missing-value texts as written in YAML: whole numbers become their text (``-999``); a YAML null,
    a boolean or a float is refused with the quoting that keeps the text (``'null'``, ``'NA'``, ``'1.0'``)."""
    if not isinstance(value, list):
        return value
    out = []
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            kind = {type(None): "null", bool: "boolean", float: "number"}.get(type(item), type(item).__name__)
            raise ValueError(f"{key} holds {item!r}, which YAML read as a {kind}, not a text: quote "
                             "each marker as it is written in the file, e.g. ['', 'NA', 'null', 'None', 'n/a']")
        out.append(item)
    return out


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    """Where the daily partitions are read from."""

    kind: Literal["files", "sql"] = Field(
        "files", description="Source kind: `files`, a directory of files laid out by date; `sql`, a query run "
        "against a database connection with the partition date bound as `:partition_date`.")
    path: str | None = Field(None, description="Files: directory (relative to SCORING_HOME) or absolute path "
                             "holding the partitions.")
    query: str | None = Field(
        None, description="SQL: the query returning one partition's rows (the entity key and the model's inputs, "
        "any other columns are ignored); `:partition_date` is bound to the partition's date (a date on "
        "PostgreSQL, 'YYYY-MM-DD' text on SQLite), e.g. `SELECT * FROM features WHERE day = :partition_date`.")
    query_file: str | None = Field(
        None, description="SQL: or a file holding the query (relative to SCORING_HOME, e.g. sql/sources/x.sql).")
    connection: str | None = Field(
        None, description="SQL: the Airflow connection (or AIRFLOW_CONN_<ID>) of the database the query runs on "
        "(default: output.connection).")
    asset: str | None = Field(
        None, description="The name of an Airflow asset whose partitioned events (partition key: the date, "
        "YYYY-MM-DD) schedule the job instead of `schedule`: a run per event, for the event's day. The "
        "upstream DAG that loads the files or rows declares the asset as an outlet; `schedule` must be null.")
    asset_uri: str | None = Field(
        None, description="The asset's URI, when the upstream declares one (an asset is named by name and URI).")
    ready_query: str | None = Field(
        None, description="SQL: the query wait_for_partition runs until its first value is true, with "
        "`:partition_date` bound, e.g. `SELECT count(*) > 0 FROM load_audit WHERE day = :partition_date AND "
        "status = 'done'`. Default: whether the query returns a row (`SELECT EXISTS (<query>)`).")
    format: Literal["parquet", "csv"] = Field("parquet", description="File format of the partition's files.")
    layout: str = Field(
        "date={date}",
        description="Sub-directory of one partition below `path`; `{date}` is replaced by YYYY-MM-DD.",
    )
    wait_timeout_minutes: float = Field(
        360, gt=0, description="How long wait_for_partition waits for a late partition: past its expected "
        "arrival (`expected_by`) by this much, a day with no data is recorded `missing` and the sensor fails at "
        "once; it is also the longest one run's sensor waits."
    )
    expected_by: str | None = Field(
        None, description="When a day's data is expected (HH:MM, the job's time zone) on the day "
        "`expected_days_after` days after it. Before then the partition is 'not due yet' and the sensor waits; "
        "after it, 'late'. Default: 00:00, the moment the day is over.",
    )
    expected_days_after: int = Field(
        1, ge=0, le=366, description="Which day `expected_by` falls on: this many days after the partition's day.")
    poke_interval_seconds: float = Field(
        60, gt=0, description="How often wait_for_partition looks for the partition (reschedule mode: each look is "
        "a short task run, so new data is noticed within this many seconds)."
    )
    batch_rows: int = Field(
        250_000, gt=0, description="Rows per record batch in every stage; bounds memory."
    )
    shards: int = Field(
        1, ge=1, le=256,
        description="Split a partition into up to this many shards, scored in parallel by mapped Airflow tasks "
        "(on different workers with CeleryExecutor): a files source by file; a sql source by rows, which the "
        "plan reads once (one snapshot of the source) into the run's staging for every shard. One publish step "
        "makes the partition visible only when every shard succeeded. 1 = no sharding.",
    )
    lock_timeout_seconds: float = Field(
        60, gt=0, description="SQL: the longest a source query (the partition's rows, the readiness question) "
        "waits for a lock that another transaction holds on a table it reads (e.g. the TRUNCATE of an upstream "
        "rewrite). Past it the read fails, naming this setting, and the task's retries try again.")
    statement_timeout_seconds: float = Field(
        3600, gt=0, description="SQL: the longest one source query may run, its whole read included (an "
        "unsharded run takes the rows in as they arrive). Past it the query is cancelled and the run fails, "
        "naming this setting (not retried: a retry runs the same query).")
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="Column names to change as every file is read, before any check: {name in the export: "
        "name used by the job (entity_key, validation) and the model's input contract}, e.g. "
        "{'Customer ID': customer_id}. Maps an export without changing it upstream.",
    )

    null_values: list[str] | None = Field(
        None,
        description="CSV: the texts that mean a missing value, in every column read (exact, case-sensitive "
        "matches; the empty field is one only if listed). Default: pandas' read_csv default (`''`, `#N/A`, "
        "`#N/A N/A`, `#NA`, `-1.#IND`, `-1.#QNAN`, `-NaN`, `-nan`, `1.#IND`, `1.#QNAN`, `<NA>`, `N/A`, `NA`, "
        "`NULL`, `NaN`, `None`, `n/a`, `nan`, `null`), so a notebook's pd.read_csv and the run read a file alike; "
        "a model card's per-input `missing_values` wins over it for that input. Such a value is null; its text is "
        "kept for the quarantine.",
    )
    null_values_by_column: dict[str, list[str]] = Field(
        default_factory=dict,
        description="CSV: the texts that mean a missing value in one column (the entity key or a contract "
        "column, by the job's name), winning over the card and `null_values`, e.g. {PoolQC: []} when the text "
        "'NA' is a real category of PoolQC: an empty list makes every text a value.",
    )

    ignore: list[str] = Field(
        default_factory=list,
        description="Globs of file names in a partition folder that are not data and are not read, e.g. "
        "['*.json', 'manifest.*'] (matched without case; logged). Names starting with '_' or '.' (_SUCCESS, "
        ".crc files) are never read; any other file that is not a data file of `format` fails the run, "
        "so that no rows are skipped silently.",
    )

    _conn_id = field_validator("connection")(lambda v: _connection_id(v))

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if self.kind == "sql" or self.format != "csv":
            stray = [k for k in ("null_values", "null_values_by_column") if getattr(self, k) not in (None, {})]
            if stray:
                raise ValueError(f"{', '.join('source.' + k for k in stray)} belong(s) to CSV files (kind: files, "
                                 "format: csv): Parquet files and SQL queries hold real nulls; remove the key")
        if self.kind == "files":
            if self.path is None:
                raise ValueError("source.path is required for source.kind: files (the folder of the partitions)")
            stray = [k for k in ("query", "query_file", "ready_query", "connection") if getattr(self, k) is not None]
            if stray:
                raise ValueError(f"{', '.join('source.' + k for k in stray)} belong(s) to source.kind: sql; "
                                 "remove them, or set kind: sql")
            return self
        if (self.query is None) == (self.query_file is None):
            raise ValueError("source.kind: sql needs exactly one of source.query (the SQL) or source.query_file "
                             "(a file holding it)")
        if self.path is not None:
            raise ValueError("source.path belongs to source.kind: files; a sql source reads source.query")
        for name in ("query", "ready_query"):
            text = getattr(self, name)
            if text is not None:
                check_query(text, f"source.{name}", need_date=name == "query")
        return self

    @field_validator("expected_by")
    @classmethod
    def _a_time_of_day(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dt.time.fromisoformat(value)
            except ValueError:
                raise ValueError(f"source.expected_by {value!r} is not a time of day: use HH:MM, e.g. '06:30' "
                                 "(the job's time zone)") from None
        return value

    def expected_time(self) -> dt.time | None:
        """``expected_by`` as a time (None: the default, 00:00)."""
        return dt.time.fromisoformat(self.expected_by) if self.expected_by else None

    @field_validator("layout")
    @classmethod
    def _layout_has_date(cls, value: str) -> str:
        if "{date}" not in value:
            raise ValueError("layout must contain '{date}', e.g. 'date={date}'")
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("layout must be a folder below source.path, without '..' or a leading '/' "
                             "(e.g. 'date={date}' or 'year=x/{date}')")
        return value

    @field_validator("ignore")
    @classmethod
    def _globs_are_names(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not glob or "/" in glob:
                raise ValueError(f"{glob!r} is not a file name glob: each entry matches the name of a file in a "
                                 "partition folder, e.g. '*.json' (no '/')")
        return value

    @field_validator("null_values", mode="before")
    @classmethod
    def _markers_are_text(cls, value: Any) -> Any:
        return _marker_texts(value, "source.null_values")

    @field_validator("null_values_by_column", mode="before")
    @classmethod
    def _column_markers_are_text(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for column in value:
            if not isinstance(column, str) or not column:
                raise ValueError(f"{column!r} is not a column name: each key is the name of a column the job reads "
                                 "(the entity key or a contract column)")
        return {column: _marker_texts(texts, f"source.null_values_by_column[{column!r}]")
                for column, texts in value.items()}

    @field_validator("rename")
    @classmethod
    def _rename_targets(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for original, new in value.items():
            if not original:
                raise ValueError("an export column name (a key of the map) must not be empty")
            try:
                # the entity_key check refuses a key renamed onto a predictions table column
                check_column_name(new, f"source.rename[{original!r}]", "Choose another name",
                                  reserved=RESERVED_INPUT_NAMES)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if new in seen:
                raise ValueError(f"{seen[new]!r} and {original!r} are both renamed to {new!r}: a column name "
                                 "must be unique")
            seen[new] = original
        return value


class RouteModel(_Strict):
    """A registered model and the version or alias to score with (a cascade's route; the job's model below)."""

    name: str = Field(..., description="Model name in the registry (a lower-case identifier).")
    ref: str = Field("champion", description="Version number or alias.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        try:
            return check_identifier(value, "model name")
        except ConfigError as exc:
            raise ValueError(f"{exc} (a model is named by its registry folder, never by a path)") from None

    @field_validator("ref", mode="before")
    @classmethod
    def _ref_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ModelRef(RouteModel):
    """Which registered model scores the job."""

    name: str = Field(..., description="Model name in the registry (a folder of models/; a lower-case "
                      "identifier, as `scoring models register` requires: no path).")
    ref: str = Field(
        "champion",
        description="Version number (e.g. '3') or alias (e.g. 'champion') to score with.",
    )

    challengers: list[str] = Field(
        default_factory=list,
        description="Versions (e.g. '3') or aliases (e.g. 'challenger') of the same model scored in the shadow "
        "of the champion, on the same valid rows: their predictions go to <output.table>_shadow (never to the "
        "predictions table or the sink) and a daily comparison to scoring_shadow_comparisons "
        "(view <output.table>_compare). A failing challenger is recorded there and never fails the run.",
    )
    compare_top_n: int = Field(100, gt=0, description="N of the top-N overlap in the champion/challenger comparison.")
    split: dict[str, float] = Field(
        default_factory=dict,
        description="A/B by rule: live traffic given to other versions of the model, as `{ref: share}` (a version "
        "such as '4' or an alias such as 'challenger', and its share in percent: `10` or `'10%'`, in steps of "
        "0.01%); the champion (`ref`) keeps the rest. A row's arm comes from a stable hash of its entity key "
        "and `split_salt`, so an entity gets the same arm every day, in the nightly run and in the online door "
        "alike; each row records its `arm`, and every other version scores it in the shadow. A change of the "
        "split, the salt or a version behind it starts a new assignment period (scoring_ab_periods). The arms' "
        "versions must share the champion's contract.",
    )
    split_salt: str | None = Field(
        None, min_length=1, max_length=200,
        description="The salt of the arm assignment (default: the job id). A new salt reshuffles every entity, "
        "so it starts a new assignment period like any other change of the split.",
    )
    threads: int | None = Field(
        None, gt=0,
        description="Threads the models may use to predict (OpenMP and BLAS pools, limited through threadpoolctl "
        "for the whole score stage). Default: SCORING_THREADS if set, else the cores this process may use "
        "divided by the Celery worker's concurrency under CeleryExecutor (so worker processes sharing a "
        "machine do not oversubscribe it), else all of them.",
    )

    @field_validator("split", mode="before")
    @classmethod
    def _shares(cls, value: Any) -> Any:
        """``{ref: 10}`` or ``{ref: '10%'}`` -> ``{ref: 10.0}`` (percent); refs as text."""
        if not isinstance(value, dict):
            return value
        out: dict[str, float] = {}
        for ref, share in value.items():
            text = str(share).strip()
            try:
                percent = float(text[:-1].strip() if text.endswith("%") else text)
            except ValueError:
                raise ValueError(f"split {ref}: {share!r} is not a share; write a percent such as 10 or '10%'"
                                 ) from None
            if not 0 < percent < 100 or abs(percent * 100 - round(percent * 100)) > 1e-6:  # 2.3 * 100 != 230
                raise ValueError(f"split {ref}: {share!r} must be a percent above 0 and below 100, in steps of "
                                 "0.01 (e.g. 10, '2.5%')")
            out[str(ref)] = percent
        return out

    @model_validator(mode="after")
    def _split_fits(self) -> ModelRef:
        if not self.split:
            return self
        if self.ref in self.split or "champion" in self.split:
            raise ValueError(f"split names the champion ({self.ref!r}): list only the other arms; the champion "
                             "keeps the rest of the traffic")
        total = sum(self.split.values())
        if total >= 100:
            raise ValueError(f"split gives {total:g}% to other arms: the champion must keep some traffic "
                             "(the shares must add up to less than 100)")
        return self

    def split_basis_points(self) -> list[tuple[str, int]]:
        """The split's arms in file order with their shares in basis points (1% = 100 of 10,000 buckets)."""
        return [(ref, round(share * 100)) for ref, share in self.split.items()]

    def shadowed(self) -> list[str]:
        """Every other version the run scores beside the champion: the challengers, then the split's arms."""
        return [*self.challengers, *(ref for ref in self.split if ref not in self.challengers)]

    @field_validator("challengers", mode="before")
    @classmethod
    def _refs_as_text(cls, value: Any) -> Any:
        return [str(v) if isinstance(v, int) else v for v in value] if isinstance(value, list) else value


class CascadeConfig(_Strict):
    """Cascade inference: the job's model (the router) sorts rows into routes by its prediction; each
    route's model scores them (pipeline.cascade)."""

    routes: dict[str, RouteModel] = Field(..., min_length=1, description="Router prediction (as text, e.g. "
                                          "'frequent' or '1') -> the model that scores those rows.")
    default: RouteModel | Literal["quarantine", "keep"] = Field(
        "quarantine", description="Rows whose router prediction has no route: a model that scores them, "
        "'quarantine' (reason no_route:<value>) or 'keep' (the router's own prediction stands).")
    gate: float | None = Field(None, description="Only rows whose router score is at least this go to their "
                               "route's model; the others keep the router's prediction.")

    @field_validator("routes", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class SelectConfig(_Strict):
    """Which scored rows a push sends (e.g. the top candidates of a promotions job)."""

    top_n: int | None = Field(
        None, gt=0, description="Send only the N highest scores (ties broken by entity key), ranked 1..N."
    )
    min_score: float | None = Field(None, description="Send only rows whose score is at least this.")


class _SinkConfigBase(_Strict):
    batch_rows: int = Field(1000, gt=0, description="Rows per delivered batch (one request, message or file).")
    max_attempts: int = Field(6, ge=1, le=50, description="Delivery attempts per batch before it is dead-lettered.")
    backoff_seconds: float = Field(
        1.0, ge=0, description="First wait between attempts; doubles each attempt, plus random jitter."
    )
    max_backoff_seconds: float = Field(60.0, ge=0, description="Longest wait between two attempts.")
    give_up_after_failed_batches: int = Field(
        3, ge=1,
        description="After this many batches in a row fail, the rest are dead-lettered without trying "
        "(the sink is down; a task retry or 'scoring redrive' sends them later).",
    )

    _conn_id = field_validator("connection", check_fields=False)(lambda v: _connection_id(v))


class WebhookSinkConfig(_SinkConfigBase):
    """POST batches to an HTTP endpoint."""

    kind: Literal["webhook"]
    connection: str = Field(
        ..., description="Airflow connection (or AIRFLOW_CONN_<ID>) with the base URL and credentials: "
        "password alone = Bearer token, login + password = Basic auth, extra.headers = more headers.",
    )
    endpoint: str = Field("", description="Path appended to the connection's base URL, e.g. '/offers'.")
    format: Literal["jsonl", "json"] = Field(
        "jsonl", description="Body: JSON lines (one row per line) or one JSON array."
    )
    timeout_seconds: float = Field(30, gt=0, description="Connect and read timeout of one request.")


class FilesSinkConfig(_SinkConfigBase):
    """Write Parquet or CSV files to a directory or any fsspec URI."""

    kind: Literal["files"]
    uri: str = Field(
        ..., description="Directory (relative to SCORING_HOME) or fsspec URI (s3://..., gcs://...); files go "
        "to <uri>/<job_id>/date=<partition>/.",
    )
    format: Literal["parquet", "csv"] = Field("parquet", description="File format.")
    per: Literal["batch", "partition"] = Field(
        "batch", description="One file per batch (part-00000...) or one file per partition."
    )
    connection: str | None = Field(
        None, description="Optional Airflow connection whose extra holds fsspec storage options (credentials)."
    )


class RabbitMQSinkConfig(_SinkConfigBase):
    """Publish one persistent message per batch to RabbitMQ, with publisher confirms."""

    kind: Literal["rabbitmq"]
    connection: str = Field(..., description="Airflow connection (or AIRFLOW_CONN_<ID>) with an amqp:// URI.")
    exchange: str = Field("", description="Exchange to publish to ('' = the default exchange).")
    routing_key: str = Field(..., description="Routing key (the queue name with the default exchange).")
    declare_queue: bool = Field(
        True, description="Declare a durable queue named routing_key (with the default exchange)."
    )
    format: Literal["jsonl", "json"] = Field("jsonl", description="Message body format.")


class RedisSinkConfig(_SinkConfigBase):
    """Append one entry per batch to a Redis stream (XADD, acknowledged by the server)."""

    kind: Literal["redis"]
    connection: str = Field(..., description="Airflow connection (or AIRFLOW_CONN_<ID>) with a redis:// URI.")
    stream: str = Field(..., description="Stream key.")
    maxlen: int | None = Field(None, gt=0, description="Approximate stream length cap (XADD MAXLEN ~).")
    format: Literal["jsonl", "json"] = Field("jsonl", description="Entry body format.")


SinkConfig = Annotated[
    WebhookSinkConfig | FilesSinkConfig | RabbitMQSinkConfig | RedisSinkConfig, Field(discriminator="kind")
]


class PushConfig(_Strict):
    """Push mode: send predictions to a downstream sink instead of a table."""

    sink: SinkConfig
    select: SelectConfig = Field(default_factory=SelectConfig)


class OutputConfig(_Strict):
    """Where predictions go."""

    mode: Literal["persist", "push"] = Field(
        "persist",
        description="'persist' replaces the partition in a SQL table; 'push' sends the predictions to "
        "`push.sink` and keeps none. The trigger form can override it for one run.",
    )
    connection: str = Field(
        "scoring_db",
        description="Airflow connection id (or AIRFLOW_CONN_<ID> env var) of the database holding the "
        "predictions table, the run ledger, the quarantine and the delivery state.",
    )
    table: str | None = Field(None, description="Predictions table (lower-case SQL identifier); persist mode.")
    schema_: str | None = Field(
        None, alias="schema",
        description="PostgreSQL: the analysts' schema that holds the predictions table and its views (created "
        "if missing), apart from the operational tables (ledger, quarantine, deliveries) in the connection's "
        "schema; `scoring db grant-reader` gives a read-only role SELECT on it. Empty: the connection's schema. "
        "SQLite has one schema and ignores it.",
    )
    push: PushConfig | None = Field(None, description="Sink of push mode.")

    @field_validator("table", "connection", "schema_")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None:
            check_identifier(value, "name")
        return value

    @field_validator("table")
    @classmethod
    def _derived_names_fit(cls, value: str | None) -> str | None:
        if value is None:
            return None
        longest = max(TABLE_DERIVED, key=len)
        if len(value) + len(longest) > MAX_NAME_BYTES:
            raise ValueError(
                f"table name {value!r} is {len(value)} characters; the pipeline also creates "
                f"{', '.join(repr(value + s) for s in TABLE_DERIVED)} beside it, and PostgreSQL names are at most "
                f"{MAX_NAME_BYTES} bytes, so output.table may have at most {MAX_NAME_BYTES - len(longest)} "
                "characters: choose a shorter name"
            )
        return value

    @model_validator(mode="after")
    def _mode_configured(self) -> OutputConfig:
        if self.mode == "persist" and self.table is None:
            raise ValueError("mode 'persist' needs output.table")
        if self.mode == "push" and self.push is None:
            raise ValueError("mode 'push' needs output.push.sink")
        return self

    @property
    def modes(self) -> list[str]:
        """Output modes this job can run in (the trigger form offers these)."""
        return [m for m, ok in (("persist", self.table), ("push", self.push)) if ok]


ROW_EXPECTATION_RE = re.compile(
    r"^expect_(column_values_to_\w+|column_pair_values_\w+|multicolumn_sum_to_equal"
    r"|select_column_values_to_be_unique_within_record)$"
)
# uniqueness over the whole partition cannot be judged batch by batch (duplicate entity keys are)
BATCH_BLIND = ("expect_column_values_to_be_unique",)


class JobExpectation(_Strict):
    """An extra Great Expectations check of the job, applied row by row like the contract's."""

    type: str = Field(..., description="A row-level GX expectation, e.g. expect_column_values_to_be_between.")
    kwargs: dict[str, Any] = Field(..., description="Its arguments, e.g. {column: age, min_value: 21}.")
    on_fail: Literal["quarantine", "flag"] = Field(
        "quarantine", description="quarantine the failing rows, or score them and flag them with the reason."
    )

    @field_validator("type")
    @classmethod
    def _row_level(cls, value: str) -> str:
        if value in BATCH_BLIND:
            raise ValueError(f"{value!r} needs the whole partition at once; the pipeline validates batch by "
                             "batch (duplicate entity keys are checked across the partition already)")
        if not ROW_EXPECTATION_RE.match(value):
            raise ValueError(
                f"{value!r} is not a row-level expectation: use expect_column_values_to_*, "
                "expect_column_pair_values_*, expect_multicolumn_sum_to_equal or "
                "expect_select_column_values_to_be_unique_within_record (aggregate checks cannot split "
                "rows into valid and quarantined)"
            )
        return value

    @field_validator("kwargs")
    @classmethod
    def _no_mostly(cls, value: dict[str, Any]) -> dict[str, Any]:
        if "mostly" in value:
            raise ValueError("'mostly' is not supported: every failing row is quarantined or flagged; "
                             "the tolerated share is validation.max_quarantine_share")
        if "row_condition" in value or "condition_parser" in value:
            raise ValueError("'row_condition' is not supported: the check runs on every row")
        return value


class ValidationConfig(_Strict):
    """How strict validation is."""

    max_quarantine_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Largest share of rows that may be quarantined; above it is a breach, handled by on_breach.",
    )
    on_breach: Literal["block", "flag", "ignore"] = Field(
        "block",
        description="A quarantined share above max_quarantine_share: `block` fails the run at validate and "
        "publishes nothing; `flag` publishes and marks the partition (ledger breach 'quarantine', a failed "
        "check task, a red report banner); `ignore` publishes with a warning in the log only.",
    )
    on_empty: Literal["fail", "succeed"] = Field(
        "fail",
        description="A partition whose files hold no rows: fail the run, or succeed with zero rows and a warning.",
    )
    unknown_categories: Literal["quarantine", "flag"] = Field(
        "quarantine",
        description="Rows with a category never seen in training: quarantine them, or score them (the model's "
        "unknown-value handling applies) and flag them with unknown_category:<column>.",
    )
    expectations: list[JobExpectation] = Field(
        default_factory=list, description="Extra row-level Great Expectations checks of this job."
    )
    blank_is_missing: bool | list[str] = Field(
        False,
        description="Numeric columns (of the model's input contract) in which whitespace-only text "
        "is a missing value (null, for the model's imputer) instead of an invalid number; true = every "
        "numeric column. A column that is not nullable in the contract is still quarantined "
        "(not_null:<column>). The card can say the same per column with blank_is_missing: true. In a CSV file "
        "the empty field and the other texts of source.null_values are missing values without it.",
    )


class DeadlineConfig(_Strict):
    """By when a scheduled run's predictions must be published; a late run alerts (Airflow deadline alerts)."""

    publish_by: str = Field(..., description="Local time (HH:MM, in the job's timezone) by which the partition "
                            "must be published, e.g. '06:00'.")
    days_after: int = Field(1, ge=1, le=7, description="On which day after the partition's: 1, the morning after "
                            "the day it scores (the nightly run's own morning).")

    @field_validator("publish_by")
    @classmethod
    def _clock(cls, value: str) -> str:
        try:
            dt.time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time of day: use HH:MM, e.g. '06:00'") from None
        return value


class DriftConfig(_Strict):
    """Drift of the inputs and the scores against the model's training statistics."""

    psi_threshold: float = Field(0.2, gt=0, description="PSI above which a feature (or the score) may have "
                                 "drifted; a breach needs the shift to be significant too (alpha).")
    alpha: float = Field(0.01, gt=0, lt=1, description="Significance level of the chi-square test of a feature's "
                         "bin counts against its training shares: a feature breaches only when its PSI is above "
                         "psi_threshold AND the test's p-value is below alpha (Bonferroni: alpha divided by the "
                         "number of features tested), so small samples' noise does not raise alarms.")
    min_rows: int = Field(100, ge=1, description="Partitions with fewer scored rows are not checked.")
    on_breach: Literal["block", "flag", "ignore"] = Field(
        "flag",
        description="A drift breach: `block` refuses the output step (status failed, failed_stage drift_gate, "
        "nothing published); `flag` publishes and marks the partition (ledger breach 'drift', a failed check "
        "task, a red report banner, the alert); `ignore` publishes and records the drift in scoring_drift only.",
    )
    block: bool = Field(False, description="Deprecated: `block: true` is `on_breach: block`.")
    alert_connection: str | None = Field(
        None, description="Airflow connection of a webhook that drift alerts are POSTed to (besides the ERROR log)."
    )

    _conn_id = field_validator("alert_connection")(lambda v: _connection_id(v))

    @model_validator(mode="before")
    @classmethod
    def _block_is_on_breach(cls, data: Any) -> Any:
        """The older ``block: true`` means ``on_breach: block``; both saying different things is an error."""
        if isinstance(data, dict) and data.get("block") is True:
            if data.get("on_breach", "block") != "block":
                raise ValueError(f"block: true contradicts on_breach: {data['on_breach']}; keep on_breach only")
            data = {**data, "on_breach": "block"}
        return data


class OnlineConfig(_Strict):
    """The online door of the job (``scoring serve``): request limits, alias re-reading, the answers' record."""

    max_rows: int = Field(1000, ge=1, le=100_000, description="Rows one request may hold; more: HTTP 413.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Bytes a request's body may have; more: HTTP 413.")
    reload_seconds: float = Field(2.0, gt=0, le=3600, description="How often the served model's alias is read "
                                  "again: a promotion or a rollback is served within this many seconds, once the "
                                  "new version is verified (sha256 against its anchor, golden rows).")
    queue_records: int = Field(100_000, ge=1, description="Answered rows waiting to be written to "
                               "<output.table>_online at most (the database slow or down); when the queue is full "
                               "requests get HTTP 503: never an answer without its record.")
    record_inputs: bool = Field(True, description="Store each row's inputs (JSON) beside their sha256 in "
                                "<output.table>_online; false: only the hash (then no drift of online traffic).")


OUTCOME_METRICS = ("roc_auc", "log_loss", "accuracy", "brier", "calibration_gap", "mae", "rmse")


class OutcomesConfig(_Strict):
    """Where the realised outcomes (labels) of earlier predictions arrive (``scoring outcomes``, pipeline.outcomes)."""

    path: str | None = Field(None, description="Files: directory (relative to SCORING_HOME) or absolute path "
                             "holding one folder per outcome date (`layout`).")
    format: Literal["parquet", "csv"] = Field("parquet", description="Files: format of the outcome files.")
    layout: str = Field("date={date}", description="Files: sub-directory of one outcome date; `{date}` is "
                        "replaced by YYYY-MM-DD.")
    table: str | None = Field(None, description="Or a table in `connection` with the key, `date_column` and "
                              "`label` columns.")
    connection: str | None = Field(None, description="Table: its Airflow connection (default: output.connection).")
    date_column: str = Field("outcome_date", description="Table: the column holding the outcome date.")
    key: str | None = Field(None, description="The entity key column of the outcomes (default: entity_key).")
    label: str = Field(..., description="The column holding the realised outcome (class or value).")
    horizon_days: int = Field(0, ge=0, le=3660, description="Outcomes dated D + horizon_days judge the "
                              "predictions of partition D (e.g. 30 for a 30-day horizon).")
    floors: dict[str, float] = Field(default_factory=dict, description="Alert when a metric falls below: e.g. "
                                     "{roc_auc: 0.75, accuracy: 0.8}.")
    ceilings: dict[str, float] = Field(default_factory=dict, description="Alert when an error metric rises above: "
                                       "e.g. {log_loss: 0.4, rmse: 12}.")

    @field_validator("table", "connection")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None:
            check_identifier(value, "name")
        return value

    @field_validator("floors", "ceilings")
    @classmethod
    def _known_metrics(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(OUTCOME_METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}: use {', '.join(OUTCOME_METRICS)}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> OutcomesConfig:
        if (self.path is None) == (self.table is None):
            raise ValueError("outcomes need either path (files) or table")
        if "{date}" not in self.layout:
            raise ValueError("outcomes.layout must contain {date}")
        return self


VERDICT_METRICS = ("log_loss", "brier", "error_rate", "squared_error", "absolute_error")


class VerdictConfig(_Strict):
    """How two versions are judged on realised outcomes (the A/B verdict and the promotion gate, pipeline.verdicts)."""

    metric: Literal["log_loss", "brier", "error_rate", "squared_error", "absolute_error"] | None = Field(
        None, description="The per-row loss the versions are compared on (lower is better): log_loss or brier "
        "(binary classifiers), error_rate (classifiers), squared_error or absolute_error (regressors). Default: "
        "log_loss for a binary classifier, error_rate for a multi-class one, squared_error for a regressor.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence of the interval of the difference "
                              "between two versions' mean loss; a verdict is 'better' or 'worse' only when the "
                              "interval lies wholly on one side of zero.")
    min_rows: int = Field(1000, ge=1, description="Labelled rows each version needs before any verdict other "
                          "than 'not yet distinguishable'.")


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
    entity_key: str = Field(
        ..., description="Column identifying one entity; one prediction per entity per day. Any name the export "
        "has (e.g. 'customerID', 'Customer ID'), or the name source.rename gives it; quoted in SQL.",
    )
    entity_key_type: Literal["string", "integer"] | None = Field(
        None, description="How the entity key is read: `string` keeps the text as it is (`00123` stays `00123`, "
        "a key other than `123`); `integer` reads it as a whole number (BIGINT). Default: the model card's "
        "`entity_key_type` (the training frame's key dtype), else the type a Parquet file or a query declares, "
        "else (CSV) `string`: never a guess from the values.",
    )
    source: SourceConfig
    model: ModelRef
    output: OutputConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    deadline: DeadlineConfig | None = Field(
        None, description="By when the predictions must be published (scheduled runs); a late run alerts through "
        "drift.alert_connection and the ERROR log, as drift does.")
    cascade: CascadeConfig | None = Field(None, description="Cascade inference: `model` is the router, "
                                          "these routes' models score its rows (two stages).")
    outcomes: OutcomesConfig | None = Field(None, description="Realised outcomes of the predictions, for "
                                            "`scoring outcomes` (performance per model version and partition).")
    verdict: VerdictConfig = Field(default_factory=VerdictConfig, description="How a challenger or an A/B arm "
                                   "is judged against the champion on realised outcomes, and when the promotion "
                                   "gate (`scoring models promote --if-better`) lets it through.")
    online: OnlineConfig = Field(default_factory=OnlineConfig, description="The online door (`scoring serve`): "
                                 "request limits, how often the alias is re-read, the record of its answers in "
                                 "<output.table>_online.")

    @field_validator("job_id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        check_identifier(value, "name")
        return value

    @model_validator(mode="after")
    def _cascade_fits(self) -> JobConfig:
        if self.cascade is None:
            return self
        if self.model.challengers:
            raise ValueError("cascade with model.challengers is not supported yet: compare the route models in "
                             "jobs of their own")
        if self.model.split:
            raise ValueError("cascade with model.split is not supported: split the route models' traffic in jobs "
                             "of their own")
        return self

    @model_validator(mode="after")
    def _deadline_after_the_run(self) -> JobConfig:
        if self.deadline is not None:
            self.deadline_interval()  # raises ValueError naming what is wrong
        return self

    def deadline_interval(self) -> dt.timedelta:
        """The deadline after a scheduled run's logical date (its cron tick on the partition's day)."""
        fields = (self.schedule or "").split()
        if self.deadline is None or len(fields) != 5 or not (fields[0].isdigit() and fields[1].isdigit()) \
                or fields[2:] != ["*", "*", "*"]:
            raise ValueError("deadline needs a schedule that runs every day at a fixed time (e.g. '0 2 * * *'): "
                             "the deadline is counted from each run's own tick (a weekday-only schedule would "
                             "alert every weekend, its Friday run starting on Monday)")
        tick = dt.timedelta(hours=int(fields[1]), minutes=int(fields[0]))
        due = dt.time.fromisoformat(self.deadline.publish_by)
        interval = dt.timedelta(days=self.deadline.days_after, hours=due.hour, minutes=due.minute) - tick
        if interval <= dt.timedelta(days=1):
            raise ValueError(f"deadline.publish_by {self.deadline.publish_by} (day {self.deadline.days_after} after "
                             f"the partition) comes before the run of that partition starts ({fields[1]}:"
                             f"{int(fields[0]):02d} the day after it): choose a later time or more days_after")
        return interval

    @model_validator(mode="after")
    def _one_trigger(self) -> JobConfig:
        if self.source.asset and self.schedule:
            raise ValueError(f"source.asset {self.source.asset!r} schedules the job on the asset's events: set "
                             "schedule: null (or remove source.asset to keep the cron schedule)")
        if self.source.asset_uri and not self.source.asset:
            raise ValueError("source.asset_uri needs source.asset (the asset's name)")
        return self

    @model_validator(mode="after")
    def _shadow_has_a_table(self) -> JobConfig:
        if not self.model.shadowed():
            return self
        if self.output.table is None:
            what = "model.challengers" if self.model.challengers else "model.split"
            raise ValueError(f"{what} need output.table: the other versions' predictions go to "
                             "<output.table>_shadow (in push mode too), never to the sink")
        for suffix in SHADOW_DERIVED:
            if len(self.output.table) + len(suffix) > MAX_NAME_BYTES:
                raise ValueError(f"with model.challengers the pipeline also creates {self.output.table + suffix!r}, "
                                 f"longer than PostgreSQL's {MAX_NAME_BYTES} bytes: choose an output.table of at "
                                 f"most {MAX_NAME_BYTES - len(suffix)} characters")
        return self

    @field_validator("entity_key")
    @classmethod
    def _column_name(cls, value: str) -> str:
        try:
            return check_column_name(value, "entity_key")
        except ConfigError as exc:  # reported with the file and the key, like every other bad value
            raise ValueError(str(exc)) from None

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
        """Absolute directory holding the partitions (a files source)."""
        if self.source.path is None:
            raise ConfigError(f"job {self.job_id}: source.kind {self.source.kind} has no folder of partitions")
        path = Path(self.source.path)
        return path if path.is_absolute() else settings.home() / path

    @property
    def source_connection(self) -> str:
        """The connection a sql source's query runs on: source.connection, else output.connection."""
        return self.source.connection or self.output.connection


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

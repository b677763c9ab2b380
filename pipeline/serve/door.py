"""The online door's scoring: a job's pinned model (``job.model``: name and alias or version) loaded and verified
as the batch run loads it, and requests' rows scored through the same kernels the nightly run uses.

A request's rows are read as the job's source reads its export (``pipeline.kernels.records``), then
``pipeline.kernels.flow.score_rows`` runs the job's checks (the card's contract, the job file's expectations,
duplicate keys within the request), the model's transformation and its estimator: the same scores, flags
and reason codes as the batch run's for the same row. Results are joined back to the request by position
(keys may repeat or be missing), never by key.

The served model is one attribute, swapped whole: a request takes it once when it starts, so a request in
flight finishes on the model it started with. ``refresh`` re-reads the alias (a fresh ``Models``, so a promote
or a rollback is seen); a new version is resolved, its artifact's sha256 checked against its anchor before it
is unpickled and its golden rows re-scored (``pipeline.score.scorer_for``) before it serves; a version that
fails stays unserved, the old one keeps serving, and the failure is counted and logged (no values).

Not served online: a cascade job (refused at ``load``) and challengers (the shadow scoring is the batch run's).
Thread limits (scikit-learn's OpenMP, BLAS) are the server's to set for its process; the door sets none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.config import JobConfig
from pipeline.errors import ConfigError, failure_text
from pipeline.kernels.columns import REASONS
from pipeline.kernels.flow import DriftSettings, Model, score_rows
from pipeline.kernels.records import RecordReading, check_records, reading_for
from pipeline.kernels.validate import RowValidator, suite
from pipeline.keys import duplicates
from pipeline.resolve import Models
from pipeline.score import scorer_for

log = logging.getLogger(__name__)
POSITION = "__position"  # a row's place in its request, carried beside the contract's columns (not checked)
NO_DRIFT = DriftSettings(min_rows=2**62)  # online traffic's drift is judged daily from the records, not per request
SCORED, QUARANTINED = "scored", "quarantined"


@dataclass(frozen=True)
class Served:
    """The model version a door serves: its name, version, when it was loaded (UTC) and its artifact's sha256."""

    name: str
    version: int
    loaded_at: dt.datetime
    sha256: str = ""


@dataclass(frozen=True)
class RowResult:
    """One row of a request: scored (score, prediction, flags) or quarantined (the batch's reason codes)."""

    index: int
    key: str | int | None
    status: str
    score: float | None
    prediction: str | None
    flags: list[str]
    reasons: list[str]
    model_name: str
    model_version: int
    inputs: dict[str, Any]
    inputs_sha256: str


def inputs_sha256(record: dict[str, Any]) -> str:
    """The sha256 (hex) of a record's canonical JSON: sorted keys, no spaces, UTF-8 (lone surrogates passed)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class _Loaded:
    """Everything a request needs, taken once at its start: the served version, its model and reading."""

    served: Served
    card: dict[str, Any]
    model: Model  # its checks for the reading's usual key type, without duplicate keys
    reading: RecordReading
    checks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by key type, no duplicate keys


class Door:
    """A job's model behind the online door: ``load`` once, ``refresh`` now and then, ``score`` per request."""

    def __init__(self, job: JobConfig, models: Callable[[], Models] = Models) -> None:
        self.job = job
        self._models = models
        self._loaded: _Loaded | None = None
        self._refreshing = threading.Lock()
        self.reload_failures = 0
        self.last_reload_error: str | None = None

    @property
    def ready(self) -> bool:
        """A verified model is loaded."""
        return self._loaded is not None

    @property
    def served(self) -> Served | None:
        """The version served now (None before ``load``)."""
        loaded = self._loaded
        return None if loaded is None else loaded.served

    # -- the model ---------------------------------------------------------------------------
    def load(self) -> Served:
        """Resolve, verify and load the job's model; raises the batch's errors (ModelNotFoundError,
        ModelIntegrityError, ConfigError: a cascade job, an expectation that names a missing column)."""
        if self.job.cascade is not None:
            raise ConfigError(
                f"job {self.job.job_id} is a cascade (router {self.job.model.name} and its routes): the online door "
                "serves one model per job. Serve a route's model through a job of its own, or score the cascade "
                "in its nightly run.")
        with self._refreshing:
            models = self._models()
            loaded = self._build(models, self.job.model.ref)
            self._loaded = loaded
        log.info("job %s: serving model %s v%s (sha256 %s)", self.job.job_id, loaded.served.name,
                 loaded.served.version, loaded.served.sha256[:12])
        return loaded.served

    def refresh(self) -> bool:
        """Re-read the job's alias; a version other than the served one is loaded and verified, then served.
        True when it switched; on failure the old version keeps serving (``reload_failures``,
        ``last_reload_error``)."""
        name, ref = self.job.model.name, self.job.model.ref
        with self._refreshing:
            current = self._loaded
            version: int | None = None
            try:
                models = self._models()
                version = models.registry.version_of(name, ref)
                if current is not None and version == current.served.version:
                    return False
                loaded = self._build(models, version)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
                self.reload_failures += 1
                self.last_reload_error = f"{type(exc).__name__}: {failure_text(exc)}"
                log.error("job %s: model %s %s (v%s) not loaded, still serving %s: %s", self.job.job_id, name, ref,
                          "?" if version is None else version,
                          f"v{current.served.version}" if current else "nothing", self.last_reload_error)
                return False
            self._loaded = loaded
            self.last_reload_error = None
        log.info("job %s: model %s %s now serves v%s (was %s)", self.job.job_id, name, ref, loaded.served.version,
                 f"v{current.served.version}" if current else "nothing")
        return True

    def _build(self, models: Models, ref: str | int) -> _Loaded:
        """A version resolved, verified (sha256 before unpickling, golden rows after) and made ready to score."""
        mv = models.resolve(self.job.model.name, ref)
        scorer = scorer_for(models.registry, mv)
        card = mv.card
        reading = reading_for(self.job, card["inputs"], card)
        served = Served(mv.name, int(mv.version), dt.datetime.now(dt.UTC), str(card.get("sha256", "")))
        loaded = _Loaded(served, card, Model(card, scorer, []), reading)
        checks = self._checks(loaded, reading.arrow_key_type([]), ())
        RowValidator(checks, self.job.job_id)  # every check builds (a bad one fails the load, not a request)
        loaded.model = Model(card, scorer, checks)
        return loaded

    def _checks(self, loaded: _Loaded, key_type: pa.DataType, duplicate_keys: tuple[Any, ...]
                ) -> list[dict[str, Any]]:
        """The job's checks on rows with this key type (and these duplicate keys), as the validate stage builds them."""
        memo = str(key_type)
        if duplicate_keys or memo not in loaded.checks:  # a request's duplicate keys are its own: not kept
            job = self.job
            schema = _with_position(loaded.reading.schema(key_type))
            checks = suite(loaded.card["inputs"], job.entity_key, schema, duplicate_keys=list(duplicate_keys),
                           configured=job.validation.expectations,
                           unknown_categories=job.validation.unknown_categories, job_id=job.job_id)
            if duplicate_keys:
                return checks
            loaded.checks[memo] = checks
        return loaded.checks[memo]

    # -- a request ---------------------------------------------------------------------------
    def score(self, records: list[dict[str, Any]], request_id: str) -> list[RowResult]:
        """Score a request's rows (JSON objects by the export's column names) in their order.

        Raises:
            RequestError: the rows cannot be read (not a list of objects, a key its type cannot read, ...).
            RuntimeError: no model is loaded yet (``ready`` is False).
        """
        loaded = self._loaded  # once: a refresh during this request does not change its answers
        if loaded is None:
            raise RuntimeError(f"job {self.job.job_id}: no model is loaded yet (the door is not ready)")
        rows = check_records(records)
        table = loaded.reading.read(rows)
        if not table.num_rows:
            return []
        key = self.job.entity_key
        repeated = duplicates([table.column(key)])
        schema = _with_position(table.schema)
        checks = (loaded.model.expectations if not repeated and table.schema.field(key).type == loaded.reading.
                  arrow_key_type([]) else self._checks(loaded, table.schema.field(key).type,
                                                      tuple(sorted(repeated, key=str))))
        table = table.append_column(POSITION, pa.array(range(table.num_rows), pa.int64()))
        result = score_rows([table], Model(loaded.card, loaded.model.scorer, checks), key=key, schema=schema,
                            batch_rows=table.num_rows, drift=NO_DRIFT, name=self.job.job_id)
        outcome = _by_position(result.valid, result.predictions, result.quarantine)
        keys = table.column(key).to_pylist()
        served = loaded.served
        out = []
        for i, record in enumerate(rows):
            status, score, prediction, flags, reasons = outcome[i]
            out.append(RowResult(i, keys[i], status, score, prediction, flags, reasons, served.name, served.version,
                                 record, inputs_sha256(record)))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s: request %s: %d row(s), %d quarantined, model %s v%s", self.job.job_id, request_id,
                      len(out), sum(r.status == QUARANTINED for r in out), served.name, served.version)
        return out


def _with_position(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(POSITION, pa.int64()))


def _codes(text: str | None) -> list[str]:
    return [] if not text else text.split("; ")


def _by_position(valid: pa.Table | None, predictions: pa.Table, quarantine: pa.Table
                 ) -> dict[int, tuple[str, float | None, str | None, list[str], list[str]]]:
    """Each row's outcome by its position: the valid rows and their predictions are in the same order."""
    out: dict[int, tuple[str, float | None, str | None, list[str], list[str]]] = {}
    if valid is not None and valid.num_rows:
        positions = valid.column(POSITION).to_pylist()
        scores, labels = predictions.column("score").to_pylist(), predictions.column("prediction").to_pylist()
        flags = predictions.column("flags").to_pylist()
        for j, position in enumerate(positions):
            out[position] = (SCORED, scores[j], labels[j], _codes(flags[j]), [])
    for position, reasons in zip(quarantine.column(POSITION).to_pylist(), quarantine.column(REASONS).to_pylist(),
                                 strict=True):
        out[position] = (QUARANTINED, None, None, [], _codes(reasons))
    return out

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

A cascade job is served as its nightly run scores it: every model pinned (``pipeline.cascade.pin``), the rows
read with the columns of all its models (``pipeline.routes.ingest_inputs``), ``kernels.flow.score_cascade``
routing the router's valid rows to the route models, each row answered with the model that scored it and
quarantine reasons prefixed with the model that rejected the row. A refresh re-reads every model's alias.
Challengers are not served online (the shadow scoring and its comparison stay the nightly run's).

A job with ``model.split`` (A/B by rule) is served as its nightly run scores it: each generation pins the arms
(``pipeline.ab.pin``: a version with another contract than the champion's is refused, at start as at a reload)
and loads every arm's version with the champion's verification. A request's rows are checked once, with the
champion's contract (the arms share it); each valid row's arm is ``kernels.arms.assign`` of its key (the
job's salt and split), and that arm's version scores it (rows grouped by arm; ``kernels.predict`` makes a
row's score independent of its batch). Every answer names its row's arm (a quarantined row's too: the arm of
its key). An arm whose version does not resolve, load or verify falls back: its rows are scored by the
champion (their arm stays the arm's name, their version is the champion's), counted
(``arm_fallback_rows``), logged at most once per 5 minutes, and the door stays ready; such an arm is tried
again at every refresh. The champion and the arms are one generation, taken once by a request.
Thread limits (scikit-learn's OpenMP, BLAS) are the server's to set for its process; the door sets none.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline import ab
from pipeline.cascade import pin
from pipeline.config import JobConfig
from pipeline.errors import ScoringError, failure_text
from pipeline.kernels.arms import CHAMPION, assign
from pipeline.kernels.columns import REASONS
from pipeline.kernels.features import features
from pipeline.kernels.flow import DriftSettings, Model, Scored, score_cascade, score_rows
from pipeline.kernels.predict import score_batch, scored_schema
from pipeline.kernels.records import RecordReading, check_records, reading_for
from pipeline.kernels.route import child_schema
from pipeline.kernels.validate import (
    RowValidator,
    quarantine_schema,
    split_rows,
    suite,
    valid_schema,
)
from pipeline.keys import duplicates
from pipeline.model import ModelVersion
from pipeline.resolve import Models
from pipeline.routes import cascade_inputs
from pipeline.score import scorer_for
from pipeline.steps import ROUTE_DEFAULT, route_models

log = logging.getLogger(__name__)
POSITION = "__position"  # a row's place in its request, carried beside the contract's columns (not checked)
NO_DRIFT = DriftSettings(min_rows=2**62)  # online traffic's drift is judged daily from the records, not per request
SCORED, QUARANTINED = "scored", "quarantined"
REPEAT_LOG_S = 300.0  # a reload refused again for the same reason is logged again after this long
ARM = "arm:"  # an A/B arm's entries in a generation's identity: (ARM + arm name, model, version; 0: not resolved)


class _Repeats:
    """Which log lines are due: the same reason for the same subject (a reload, an arm) once per ``REPEAT_LOG_S``,
    a new reason at once. Thread-safe."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[Any, float]] = {}  # subject -> (reason, when it was last logged)
        self._lock = threading.Lock()

    def due(self, subject: str, reason: Any) -> bool:
        """Whether to log ``reason`` for ``subject`` now (it is then recorded as logged)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(subject)
            if last is not None and last[0] == reason and now - last[1] < REPEAT_LOG_S:
                return False
            self._last[subject] = (reason, now)
            return True

    def forget(self, subject: str) -> None:
        """The subject is well again: its next failure is logged at once."""
        with self._lock:
            self._last.pop(subject, None)


@dataclass(frozen=True)
class Served:
    """The model version a door serves: its name, version, when it was loaded (UTC) and its artifact's sha256; a
    cascade's router, with its route models by route name (the default model's under ``__default__``)."""

    name: str
    version: int
    loaded_at: dt.datetime
    sha256: str = ""
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)  # route -> {"name", "version"}
    arms: dict[str, dict[str, Any]] = field(default_factory=dict)
    # model.split's arms: arm -> {"version": int | None, "basis_points", "fallback": bool (scored by the champion)}


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
    arm: str | None = None  # model.split's arm of the row's entity (None: no split, or no key)


def inputs_sha256(record: dict[str, Any]) -> str:
    """The sha256 (hex) of a record's canonical JSON: sorted keys, no spaces, UTF-8 (lone surrogates passed)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


Outcome = tuple[str, float | None, str | None, list[str], list[str], str, int]  # status ... reasons, model, version


@dataclass
class _Loaded:
    """Everything a request needs, taken once at its start: the served versions, their models (checks by key type,
    without duplicate keys), how rows are read, a cascade's pinned plan."""

    served: Served
    router: Model  # the job's model (a cascade's router); its checks: ``checks``
    routes: dict[str, Model]  # a cascade's route models by route name; {} otherwise
    plan: dict[str, Any] | None  # a cascade's pinned plan (``pipeline.cascade.pin``)
    reading: RecordReading
    identity: tuple[tuple[str, str, int], ...]  # (route, model, version) of every model served ('' the router)
    checks: dict[str, tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]] = field(default_factory=dict)
    salt: str = ""  # model.split's assignment (``pipeline.ab``): its salt, [(arm, basis points)] and loaded arms
    split: list[tuple[str, int]] = field(default_factory=list)
    arms: dict[str, Model] = field(default_factory=dict)  # the arms that serve, by arm name
    fallbacks: dict[str, str] = field(default_factory=dict)  # the arms scored by the champion: arm -> why
    # the router's checks built (a Great Expectations context, ~12 ms), by key type: one per request in flight
    validators: dict[str, queue.SimpleQueue[RowValidator]] = field(default_factory=dict)

    @contextmanager
    def validator(self, key_type: str, checks: list[dict[str, Any]], name: str) -> Iterator[RowValidator]:
        """A validator of the router's usual ``checks`` for this key type, one request's at a time: taken from
        the pool (built when every one is in use) and given back."""
        pool = self.validators.setdefault(key_type, queue.SimpleQueue())
        try:
            validator = pool.get_nowait()
        except queue.Empty:
            validator = RowValidator(checks, name)
        try:
            yield validator
        finally:
            pool.put(validator)


class Door:
    """A job's model behind the online door: ``load`` once, ``refresh`` now and then, ``score`` per request."""

    def __init__(self, job: JobConfig, models: Callable[[], Models] = Models) -> None:
        self.job = job
        self._models = models
        self._loaded: _Loaded | None = None
        self._refreshing = threading.Lock()
        self.reload_failures = 0
        self.last_reload_error: str | None = None
        self._repeats = _Repeats()  # a refused reload's and an arm's fallback lines: once per REPEAT_LOG_S each
        self.arm_fallback_rows: dict[str, int] = {}  # rows of each arm scored by the champion instead, since start
        self._counting = threading.Lock()

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
        """Resolve, verify and load the job's model (a cascade: all its models); raises the batch's errors
        (ModelNotFoundError, ModelIntegrityError, ConfigError: an expectation that names a missing column)."""
        with self._refreshing:
            loaded = self._build(self._models())
            self._loaded = loaded
        log.info("job %s: serving %s", self.job.job_id, _describe(loaded.identity))
        return loaded.served

    def refresh(self) -> bool:
        """Re-read the job's aliases; versions other than the served ones are loaded and verified, then served.
        True when it switched; on failure the old versions keep serving (``reload_failures``,
        ``last_reload_error``)."""
        name, ref = self.job.model.name, self.job.model.ref
        with self._refreshing:
            current = self._loaded
            wanted: tuple[tuple[str, str, int], ...] = ()
            try:
                models = self._models()
                wanted = self._wanted(models)
                if current is not None and wanted == current.identity and not current.fallbacks:
                    return False
                loaded = self._build(models, current)  # the versions loaded already are not loaded again
                if current is not None and (loaded.identity, loaded.fallbacks) == (current.identity,
                                                                                   current.fallbacks):
                    return False  # an arm in fallback tried again and still failing: nothing changed
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old version serving
                self.reload_failures += 1
                error = f"{type(exc).__name__}: {failure_text(exc)}"
                self.last_reload_error = error
                if self._repeats.due("reload", (wanted, error)):  # the same refusal every reload: counted each time
                    log.error("job %s: model %s %s (%s) not loaded, still serving %s: %s", self.job.job_id, name,
                              ref, _describe(wanted) if wanted else "not resolved",
                              _describe(current.identity) if current else "nothing", error)
                return False
            self._loaded = loaded
            self.last_reload_error = None
            self._repeats.forget("reload")
        log.info("job %s: model %s %s now serves %s (was %s)", self.job.job_id, name, ref, _describe(loaded.identity),
                 _describe(current.identity) if current else "nothing")
        return True

    def _wanted(self, models: Models) -> tuple[tuple[str, str, int], ...]:
        """The versions the job's references name now (aliases read again), without loading anything."""
        registry, job = models.registry, self.job
        wanted = [("", job.model.name, registry.version_of(job.model.name, job.model.ref))]
        if job.cascade is not None:
            refs = dict(job.cascade.routes)
            if not isinstance(job.cascade.default, str):
                refs[ROUTE_DEFAULT] = job.cascade.default
            wanted += [(route, r.name, registry.version_of(r.name, r.ref)) for route, r in sorted(refs.items())]
        for ref, _ in job.model.split_basis_points():
            try:
                wanted.append((ARM + ref, job.model.name, registry.version_of(job.model.name, ref)))
            except ScoringError:  # an arm that does not resolve falls back to the champion
                wanted.append((ARM + ref, job.model.name, 0))
        return tuple(wanted)

    def _build(self, models: Models, current: _Loaded | None = None) -> _Loaded:
        """Every model of the job resolved, verified (sha256 before unpickling, golden rows after) and ready; a
        version ``current`` holds loaded already is taken from it. An arm that fails falls back (``fallbacks``);
        an arm with another contract than the champion's refuses the whole generation (ConfigError)."""
        job = self.job
        loaded_before = _models_of(current)
        champion = models.resolve(job.model.name, job.model.ref)
        router = _model(models, champion, loaded_before)
        plan = pin(job, models) if job.cascade is not None else None
        routes = {route: _model(models, models.resolve(m["name"], m["version"]), loaded_before)
                  for route, m in (route_models(plan) if plan else {}).items()}
        pinned = ab.pin(job, models, champion) if job.model.split else []
        arms, fallbacks = self._arms(models, pinned, loaded_before)
        ref = router.ref
        inputs = router.card["inputs"] if plan is None else _cascade_inputs(job, router, plan, models)
        reading = reading_for(job, inputs, router.card)
        identity = (("", ref["name"], ref["version"]),) + tuple(
            (route, m.ref["name"], m.ref["version"]) for route, m in sorted(routes.items())) + tuple(
            (ARM + arm.name, ref["name"], arm.version or 0) for arm in pinned)
        served = Served(ref["name"], ref["version"], dt.datetime.now(dt.UTC), str(router.card.get("sha256", "")),
                        {route: m.ref for route, m in routes.items()},
                        {arm.name: {"version": arm.version, "basis_points": arm.basis_points,
                                    "fallback": arm.name in fallbacks} for arm in pinned})
        loaded = _Loaded(served, router, routes, plan, reading, identity, salt=ab.salt(job), split=ab.split_of(pinned),
                         arms=arms, fallbacks=fallbacks)
        for arm, error in fallbacks.items():
            self._note_fallback(arm, error, served)
        key_type = reading.arrow_key_type([])
        checks, by_route = self._checks(loaded, key_type, ())
        for exps in by_route.values():
            RowValidator(exps, job.job_id)  # every check builds (a bad one fails the load, not a request)
        loaded.validators[str(key_type)] = queue.SimpleQueue()
        loaded.validators[str(key_type)].put(RowValidator(checks, job.job_id))
        return loaded

    def _arms(self, models: Models, pinned: list[ab.Arm], loaded_before: dict[tuple[str, int, str], Model]
              ) -> tuple[dict[str, Model], dict[str, str]]:
        """The pinned arms' versions loaded and verified as the champion is; the arms that cannot serve, with why."""
        arms: dict[str, Model] = {}
        fallbacks: dict[str, str] = {}
        for arm in pinned:
            if arm.version is None:
                fallbacks[arm.name] = f"it does not resolve: {arm.error}"
                continue
            try:
                arms[arm.name] = _model(models, models.resolve(self.job.model.name, arm.version), loaded_before)
            except Exception as exc:  # noqa: BLE001 - any failure of an arm's version: its rows go to the champion
                fallbacks[arm.name] = f"v{arm.version} is not loaded: {type(exc).__name__}: {failure_text(exc)}"
        return arms, fallbacks

    def _note_fallback(self, arm: str, error: str, served: Served, rows: int = 0) -> None:
        """Rows of an arm scored by the champion: counted; a WARNING once per REPEAT_LOG_S for the same reason."""
        if rows:
            with self._counting:
                self.arm_fallback_rows[arm] = self.arm_fallback_rows.get(arm, 0) + rows
        if not self._repeats.due(f"arm {arm}", error):
            return
        log.warning("job %s: model.split arm %r cannot serve, its rows are scored by the champion %s v%s (counted "
                    "in scoring_online_arm_fallbacks_total; the arm is tried again at every reload): %s",
                    self.job.job_id, arm, served.name, served.version, error)

    def _checks(self, loaded: _Loaded, key_type: pa.DataType, duplicate_keys: tuple[Any, ...]
                ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        """The job's checks (the router's, each route model's) on rows with this key type and these duplicate
        keys, as the validate stage builds them."""
        memo = str(key_type)
        if duplicate_keys or memo not in loaded.checks:  # a request's duplicate keys are its own: not kept
            schema = _with_position(loaded.reading.schema(key_type))
            checks = self._suite(loaded.router, schema, list(duplicate_keys))
            by_route = {route: self._suite(m, child_schema(schema), []) for route, m in loaded.routes.items()}
            if duplicate_keys:
                return checks, by_route
            loaded.checks[memo] = (checks, by_route)
        return loaded.checks[memo]

    def _suite(self, model: Model, schema: pa.Schema, duplicate_keys: list[Any]) -> list[dict[str, Any]]:
        job = self.job
        return suite(model.card["inputs"], job.entity_key, schema, duplicate_keys=duplicate_keys,
                     configured=job.validation.expectations, unknown_categories=job.validation.unknown_categories,
                     job_id=job.job_id)

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
        checks, by_route = self._checks(loaded, table.schema.field(key).type, tuple(sorted(repeated, key=str)))
        schema = _with_position(table.schema)
        table = table.append_column(POSITION, pa.array(range(table.num_rows), pa.int64()))
        router = Model(loaded.router.card, loaded.router.scorer, checks)
        served = loaded.served
        arms: list[str | None] = [None] * table.num_rows
        if loaded.split:
            arms = list(assign(table.column(key), loaded.salt, loaded.split))
            with self._validator(loaded, schema, key, checks, repeated) as validator:
                outcome = self._score_arms(loaded, table, schema, validator, arms)
        elif loaded.plan is None:
            with self._validator(loaded, schema, key, checks, repeated) as validator:
                result = score_rows([table], router, key=key, schema=schema, batch_rows=table.num_rows,
                                    drift=NO_DRIFT, name=self.job.job_id, validator=validator)
            outcome = _by_position(result, served)
        else:
            routes = {r: Model(m.card, m.scorer, by_route[r]) for r, m in loaded.routes.items()}
            result = score_cascade([table], router, routes, loaded.plan, key=key, schema=schema,
                                   batch_rows=table.num_rows, drift=NO_DRIFT)
            outcome = _cascade_by_position(result, table.column(key).to_pylist(), served)
        keys = table.column(key).to_pylist()
        out = [RowResult(i, keys[i], *outcome[i], record, inputs_sha256(record), arms[i])
               for i, record in enumerate(rows)]
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s: request %s: %d row(s), %d quarantined, %s", self.job.job_id, request_id, len(out),
                      sum(r.status == QUARANTINED for r in out), _describe(loaded.identity))
        return out

    @contextmanager
    def _validator(self, loaded: _Loaded, schema: pa.Schema, key: str, checks: list[dict[str, Any]],
                   repeated: Any) -> Iterator[RowValidator]:
        """The router's checks for a request: from the pool, or built for it alone when it repeats a key (checks
        of its own duplicate keys)."""
        if repeated:
            yield RowValidator(checks, self.job.job_id)
            return
        with loaded.validator(str(schema.field(key).type), checks, self.job.job_id) as validator:
            yield validator

    def _score_arms(self, loaded: _Loaded, table: pa.Table, schema: pa.Schema, validator: RowValidator,
                    arms: list[str | None]) -> dict[int, Outcome]:
        """A split job's rows: checked once, with the champion's contract; each valid row scored by its arm's
        version (``arms``: by position), the champion's for its own rows and for an arm in fallback."""
        key = self.job.entity_key
        valid, quarantined = [], []
        for split in split_rows(validator, [table], table.num_rows):
            valid.append(split.valid)
            if split.quarantined is not None:
                quarantined.append(split.quarantined)
        served = loaded.served
        out = _quarantined(_joined(quarantined, quarantine_schema(schema)), served)
        rows = _joined(valid, valid_schema(schema))
        arm_of = [arms[position] or CHAMPION for position in rows.column(POSITION).to_pylist()]
        out_schema = scored_schema(key, schema.field(key).type)
        for arm in dict.fromkeys(arm_of):
            model = loaded.router if arm == CHAMPION else loaded.arms.get(arm)
            part = rows.filter(pa.array([a == arm for a in arm_of]))
            if model is None:
                model = loaded.router
                self._note_fallback(arm, loaded.fallbacks.get(arm, "not loaded"), served, part.num_rows)
            inputs = [c["name"] for c in model.card["inputs"]]
            scored = score_batch(model.scorer, features(model.scorer.transform, part, inputs, key), key, out_schema)
            ref = model.ref
            scores, labels = scored.column("score").to_pylist(), scored.column("prediction").to_pylist()
            flags = scored.column("flags").to_pylist()
            for j, position in enumerate(part.column(POSITION).to_pylist()):
                out[position] = (SCORED, scores[j], labels[j], _codes(flags[j]), [], ref["name"], ref["version"])
        return out


def _joined(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()


def _model(models: Models, mv: ModelVersion, loaded: dict[tuple[str, int, str], Model]) -> Model:
    """A resolved version verified (``scorer_for``) and loaded, its checks still to build; one ``loaded`` holds
    (the same name, version and sha256: loaded and verified by an earlier generation) is taken as it is."""
    found = loaded.get((mv.name, int(mv.version), str(mv.card.get("sha256", ""))))
    return found if found is not None else Model(mv.card, scorer_for(models.registry, mv), [])


def _models_of(loaded: _Loaded | None) -> dict[tuple[str, int, str], Model]:
    """The models a generation holds, by name, version and sha256."""
    if loaded is None:
        return {}
    every = [loaded.router, *loaded.routes.values(), *loaded.arms.values()]
    return {(m.ref["name"], m.ref["version"], str(m.card.get("sha256", ""))): m for m in every}


def _cascade_inputs(job: JobConfig, router: Model, plan: dict[str, Any], models: Models) -> list[dict[str, Any]]:
    """The columns a cascade reads (``routes.cascade_inputs``: the router's, then each route model's), as its
    ingest asks for them."""
    ref = router.ref
    return cascade_inputs(job, router.card, f"{ref['name']} v{ref['version']}", route_models(plan), models.card)


def _describe(identity: tuple[tuple[str, str, int], ...]) -> str:
    def one(route: str, name: str, version: int) -> str:
        if route.startswith(ARM):
            return f"arm {route[len(ARM):]}: " + (f"{name} v{version}" if version else "not resolved")
        return f"{name} v{version}" + (f" (route {route})" if route else "")

    return ", ".join(one(*entry) for entry in identity)


def _with_position(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(POSITION, pa.int64()))


def _codes(text: str | None) -> list[str]:
    return [] if not text else text.split("; ")


def _quarantined(quarantine: pa.Table, served: Served) -> dict[int, Outcome]:
    return {position: (QUARANTINED, None, None, [], _codes(reasons), served.name, served.version)
            for position, reasons in zip(quarantine.column(POSITION).to_pylist(),
                                         quarantine.column(REASONS).to_pylist(), strict=True)}


def _by_position(result: Scored, served: Served) -> dict[int, Outcome]:
    """Each row's outcome by its position: the valid rows and their predictions are in the same order."""
    out = _quarantined(result.quarantine, served)
    valid, predictions = result.valid, result.predictions
    if valid is not None and valid.num_rows:
        scores, labels = predictions.column("score").to_pylist(), predictions.column("prediction").to_pylist()
        flags = predictions.column("flags").to_pylist()
        for j, position in enumerate(valid.column(POSITION).to_pylist()):
            out[position] = (SCORED, scores[j], labels[j], _codes(flags[j]), [], served.name, served.version)
    return out


def _cascade_by_position(result: Scored, keys: list[Any], served: Served) -> dict[int, Outcome]:
    """A cascade's outcomes by position: its quarantined rows carry their position; its scored rows passed the
    router's checks (a key given once in the request, not null), so their key names their one position."""
    out = _quarantined(result.quarantine, served)
    predictions = result.predictions
    columns = {n: predictions.column(n).to_pylist() for n in ("score", "prediction", "flags", "model_name",
                                                             "model_version")}
    at = {k: i for i, k in enumerate(keys) if i not in out}
    for j, key in enumerate(predictions.column(0).to_pylist()):
        out[at[key]] = (SCORED, columns["score"][j], columns["prediction"][j], _codes(columns["flags"][j]), [],
                        columns["model_name"][j], int(columns["model_version"][j]))
    return out

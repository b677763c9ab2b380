"""The online door's HTTP face: ``make_app(door, recorder, job, tokens)`` is a FastAPI app that scores requests.

``POST /v1/jobs/{job}:score`` takes one row (a JSON object), a list of rows, or ``{"rows": [...]}``, scores
them with the door (the nightly run's kernels), puts every answer on the recorder's queue, then answers.
``POST /v2/models/{job}/infer`` takes the same rows as the open inference protocol's named tensors.
``GET /health/live``, ``/health/ready`` (503 until a verified model is loaded), ``/metrics`` (Prometheus),
``/docs`` and ``/openapi.json`` are open; the score paths need ``Authorization: Bearer <token>``.

The request path is kept lean: the body is read with its size checked (the declared Content-Length and the
bytes actually read), parsed with ``json.loads`` and handed to the door as records; no model validates each
row (the door reads them as the job's source would). The models below document the API only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, Field

from pipeline.config import JobConfig
from pipeline.errors import RequestError
from pipeline.kernels.arms import CHAMPION
from pipeline.resolve import Models
from pipeline.serve.metrics import Metrics, served_arms, served_models
from pipeline.serve.recorder import RecorderFull

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
JSON = "application/json"


# -- the documented shapes (OpenAPI only: answers are built as dicts, requests parsed by json.loads) ---------
class ModelRef(BaseModel):
    """A model version."""

    name: str
    version: int


class RowAnswer(BaseModel):
    """What one row became."""

    index: int = Field(description="The row's position in the request (0 for a single row).")
    key: str | int | None = Field(description="The row's entity key, as read.")
    status: str = Field(description="`scored`, or `quarantined` (it failed the contract: see `reasons`).")
    score: float | None = Field(description="Probability of the positive class (regressors: the prediction).")
    prediction: str | None = Field(description="The predicted class, as the batch stores it.")
    flags: list[str] = Field(description="Warnings that did not stop the row (e.g. a value outside training).")
    reasons: list[str] = Field(description="Why a quarantined row was refused: the batch's reason codes "
                               "(e.g. `be_between:monthly_charges`).")
    model: ModelRef = Field(description="The version that scored the row (its arm's, or the champion's for an arm "
                            "in fallback and for a quarantined row).")
    arm: str | None = Field(None, description="With model.split (A/B by rule): the arm of the row's entity, "
                            "`champion` or a split's reference, as the nightly run assigns it (null without a split "
                            "or without a key).")


class ScoreAnswer(BaseModel):
    """The answer to a score request."""

    request_id: str
    model: ModelRef
    results: list[RowAnswer]


class Problem(BaseModel):
    """A refused or failed request."""

    request_id: str
    status: int
    error: str = Field(description="auth, not_found, too_large, invalid, queue_full, not_ready or internal")
    message: str


ROW = "#/components/schemas/Row"  # filled from the served model's card when the schema is asked for
ROW_SCHEMA = {"type": "object", "description": "One row: the export's own column names and values (the job's "
              "source.rename applies), the entity key included.", "additionalProperties": True}
SCORE_BODY = {
    "required": True,
    "content": {JSON: {
        "schema": {"oneOf": [
            {"$ref": ROW},
            {"type": "array", "items": {"$ref": ROW}, "description": "Rows (at most online.max_rows)."},
            {"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array", "items": {"$ref": ROW}}}},
        ]},
    }},
}
JSON_TYPES = {"float": "number", "int": "integer", "integer": "integer", "bool": "boolean", "boolean": "boolean"}
V2_BODY = {
    "required": True,
    "content": {JSON: {"schema": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "shape", "datatype", "data"],
                "properties": {"name": {"type": "string", "description": "a column"},
                               "shape": {"type": "array", "items": {"type": "integer"}},
                               "datatype": {"type": "string", "description": "BOOL, INT64, FP64, BYTES, ..."},
                               "data": {"type": "array", "items": {}}}}},
        },
    }}},
}


class Refused(Exception):
    """A request answered with an error status (its message is for the client: no row value, no token)."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


class Tokens:
    """The bearer tokens a request may carry, compared in constant time (their sha256, so lengths do not leak)."""

    def __init__(self, tokens: Collection[str]) -> None:
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def check(self, header: str | None) -> None:
        """Raise 401 unless ``header`` is ``Bearer <one of the tokens>``."""
        scheme, _, given = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Refused(401, "auth", "missing bearer token: send the header 'Authorization: Bearer <token>' with "
                          "one of the tokens in the server's tokens file", {"WWW-Authenticate": 'Bearer realm="scoring"'})
        digest = hashlib.sha256(given.strip().encode()).digest()
        found = False
        for known in self._digests:  # every token compared: the time does not say which one matched
            found |= hmac.compare_digest(digest, known)
        if not found:
            raise Refused(401, "auth", "the bearer token is not one of the server's tokens (see its tokens file)",
                          {"WWW-Authenticate": 'Bearer realm="scoring", error="invalid_token"'})


@dataclass
class Handler:
    """What the app needs to answer: the job's door, recorder, metrics, tokens and thread limit."""

    door: Any
    recorder: Any
    job: JobConfig
    metrics: Metrics
    tokens: Tokens | None
    limit_threads: Callable[[], None]
    scoring: int = 0  # requests scored at once at most (0: the thread pool's own limit, 40)
    _limiter: Any = None

    def limiter(self) -> Any:
        """The capacity limiter of the scoring threads (made in the event loop on first use); None: anyio's."""
        if self.scoring and self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.scoring)
        return self._limiter

    @property
    def too_big(self) -> str:
        """The 413 message of a body over the limit."""
        return (f"the request body is larger than {self.job.online.max_body_bytes} bytes, the most job "
                f"{self.job.job_id} takes (online.max_body_bytes in its job file): send fewer rows per request")

    async def body(self, request: Any) -> bytes:
        """The body, refused (413) as soon as the declared length or the bytes read pass the limit."""
        limit = self.job.online.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise Refused(400, "invalid", "the Content-Length header is not a number")
            if int(declared) > limit:
                raise Refused(413, "too_large", self.too_big)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, "too_large", self.too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    def answer(self, raw: bytes, request_id: str, received_at: datetime,
               rows_of: Callable[[Any], tuple[list[Any], bool]]) -> tuple[int, dict[str, Any], list[Any]]:
        """Parse, score and record one request (in a worker thread): its status, body and row results."""
        records, single = rows_of(parse(raw))
        self.check_rows(records)
        if not self.door.ready:
            raise Refused(503, "not_ready", f"job {self.job.job_id} has no verified model loaded yet: retry shortly",
                          {"Retry-After": "1"})
        self.limit_threads()
        results = self.door.score(records, request_id)
        self.record(results, request_id, received_at)
        quarantined = single and results and results[0].status != "scored"
        return (422 if quarantined else 200), self.scored(results, request_id), results

    def check_rows(self, records: list[Any]) -> None:
        """413 over online.max_rows; 422 for no rows or a row that is not an object."""
        limit = self.job.online.max_rows
        if len(records) > limit:
            raise Refused(413, "too_large", f"the request has {len(records)} rows; job {self.job.job_id} takes at "
                          f"most {limit} per request (online.max_rows in its job file): split it")
        if not records:
            raise Refused(422, "invalid", "the request holds no rows: send one row (an object) or a list of them")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise Refused(422, "invalid", f"row {index} is {_kind(record)}, not an object of column: value")

    def record(self, results: list[Any], request_id: str, received_at: datetime) -> None:
        """Every answer on the recorder's queue before it is given (503 when the queue is full)."""
        try:
            self.recorder.put(results, request_id, received_at)
        except RecorderFull:
            raise Refused(503, "queue_full", f"job {self.job.job_id}: the record of answers is full "
                          f"({self.recorder.depth} rows wait for the database), and no answer is given without "
                          "its record: retry later", {"Retry-After": "5"}) from None

    def scored(self, results: list[Any], request_id: str) -> dict[str, Any]:
        """The answer's body; its model is the job's (a cascade's router; a split's champion), as a row names it
        when one does."""
        named = [r for r in results if r.model_name == self.job.model.name
                 and getattr(r, "arm", None) in (None, CHAMPION)]
        model = ({"name": named[0].model_name, "version": named[0].model_version} if named else self.served())
        return {"request_id": request_id, "model": model, "results": [row_answer(r) for r in results]}

    def served(self) -> dict[str, Any]:
        """The served model's name and version (the door's main model)."""
        models = served_models(self.door)
        return {"name": models[0][0], "version": models[0][1]} if models else {"name": None, "version": None}


def parse(raw: bytes) -> Any:
    """The body as JSON (400 when it is not)."""
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise Refused(400, "invalid", "the body is not UTF-8 text (send JSON)") from None
    except RecursionError:
        raise Refused(400, "invalid", "the body nests lists or objects too deep to be rows") from None
    except json.JSONDecodeError as exc:  # its position only: the message never quotes the body
        raise Refused(400, "invalid", f"the body is not JSON (line {exc.lineno}, column {exc.colno}: "
                      f"{exc.msg}); send one row (an object), a list of rows, or {{\"rows\": [...]}}") from None


def rows_v1(doc: Any) -> tuple[list[Any], bool]:
    """The rows of a v1 body and whether it was one row: an object, a list, or {"rows": [...]}."""
    if isinstance(doc, dict):
        if len(doc) == 1 and isinstance(doc.get("rows"), list):
            return doc["rows"], False
        return [doc], True
    if isinstance(doc, list):
        return doc, False
    raise Refused(422, "invalid", f"the body is {_kind(doc)}: send one row (an object), a list of rows, "
                  "or {\"rows\": [...]}")


def rows_v2(doc: Any) -> tuple[list[Any], bool]:
    """The rows of an open inference protocol (V2) request: its named tensors, one column each."""
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise Refused(422, "invalid", "the body has no \"inputs\": send {\"inputs\": [{\"name\": column, "
                      "\"shape\": [rows], \"datatype\": ..., \"data\": [...]}, ...]}")
    columns: dict[str, list[Any]] = {}
    for position, tensor in enumerate(inputs):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) \
                or not isinstance(tensor.get("data"), list):
            raise Refused(422, "invalid", f"input {position} needs a \"name\" (text) and \"data\" (a list)")
        columns[tensor["name"]] = tensor["data"]
    lengths = {len(data) for data in columns.values()}
    if len(lengths) != 1:
        raise Refused(422, "invalid", f"the inputs have different lengths ({sorted(lengths)}): one value per row "
                      "in each")
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)], False


def v2_answer(body: dict[str, Any], job: str) -> dict[str, Any]:
    """A v1 answer as the open inference protocol's outputs (one tensor per field; a quarantined row's score is
    null and its reasons are joined by ``;``)."""
    results = body["results"]

    def tensor(name: str, datatype: str, values: list[Any]) -> dict[str, Any]:
        return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}

    return {"model_name": job, "model_version": str(body["model"]["version"]), "id": body["request_id"],
            "outputs": [tensor("score", "FP64", [r["score"] for r in results]),
                        tensor("prediction", "BYTES", [r["prediction"] for r in results]),
                        tensor("status", "BYTES", [r["status"] for r in results]),
                        tensor("reasons", "BYTES", [";".join(r["reasons"]) for r in results]),
                        tensor("key", "BYTES", [None if r["key"] is None else str(r["key"]) for r in results]),
                        tensor("model_version", "INT64", [r["model"]["version"] for r in results]),
                        tensor("arm", "BYTES", [r["arm"] for r in results])]}


def row_answer(result: Any) -> dict[str, Any]:
    """One row's part of the answer."""
    return {"index": result.index, "key": result.key, "status": result.status, "score": result.score,
            "prediction": result.prediction, "flags": list(result.flags), "reasons": list(result.reasons),
            "model": {"name": result.model_name, "version": result.model_version},
            "arm": getattr(result, "arm", None)}


def _kind(value: Any) -> str:
    """What a JSON value is, in words (never the value)."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (json.dumps' ``default``)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(body: dict[str, Any]) -> bytes:
    """A body as JSON bytes (floats as Python writes them: read back, the same float bit for bit)."""
    return json.dumps(body, default=_plain, ensure_ascii=False, separators=(",", ":")).encode()


def request_id_of(request: Any) -> str:
    """A new request id, after the client's X-Request-ID when it is a plain token (letters, digits, ``._:-``, at most
    128): ``<client's>:<12 hex>``. Never the client's alone: two requests that send the same id (a retry, a client's
    bug) are two answers, and each row's record is keyed by its request id."""
    given = request.headers.get("x-request-id")
    mine = uuid.uuid4().hex
    return f"{given}:{mine[:12]}" if given and REQUEST_ID.fullmatch(given) else mine


def make_app(door: Any, recorder: Any, job: JobConfig, tokens: Collection[str] | None, *,
             limit_threads: Callable[[], None] | None = None, scoring: int = 0) -> Any:
    """The FastAPI app of one job's door; ``tokens`` None: no authentication (``scoring serve --no-auth``)."""
    from fastapi import FastAPI

    app = FastAPI(title=f"scoring: job {job.job_id}", version="1",
                  description=f"Scores rows with job {job.job_id}'s model ({job.model.name}@{job.model.ref}), "
                  "its contract and preprocessing: the nightly run's, score for score.")
    state = Handler(door, recorder, job, Metrics(job.job_id, door, recorder), Tokens(tokens) if tokens is not None
                 else None, limit_threads or (lambda: None), scoring)
    app.state.door = state
    _health_routes(app, state)
    _score_routes(app, state)
    _documented(app, state, lambda name, version: Models().card(name, version))
    return app


def row_schema(card: dict[str, Any], key: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row's JSON schema and an example row, from a model card's inputs (their types, ranges, categories)."""
    properties: dict[str, Any] = {key: {"type": ["string", "integer"], "description": "The entity key."}}
    example: dict[str, Any] = {key: 1}
    for column in card.get("inputs", []):
        kind = JSON_TYPES.get(column.get("type", ""), "string")
        prop: dict[str, Any] = {"type": [kind, "null"] if column.get("nullable", True) else kind}
        if column.get("categories"):
            prop["enum"] = list(column["categories"]) + ([None] if column.get("nullable", True) else [])
        for bound, name in (("min", "minimum"), ("max", "maximum")):
            if column.get(bound) is not None:
                prop[name] = column[bound]
        properties[column["name"]] = prop
        example[column["name"]] = _example(column, kind)
    schema = {**ROW_SCHEMA, "properties": properties,
              "description": f"{ROW_SCHEMA['description']} Inputs of {card.get('name')} v{card.get('version')}: "
              "a value outside its declared range, a missing one that may not be, or an unknown category is "
              "quarantined with its reason code."}
    return schema, example


def _example(column: dict[str, Any], kind: str) -> Any:
    """A plausible value of a card's input column (the first category, the middle of the range)."""
    if column.get("categories"):
        return column["categories"][0]
    if kind in ("number", "integer"):
        low, high = column.get("min"), column.get("max")
        middle = (low + high) / 2 if low is not None and high is not None else (low if low is not None else 0)
        return int(middle) if kind == "integer" else float(middle)
    return False if kind == "boolean" else "text"


def _documented(app: Any, state: Handler, card_of: Callable[[str, int], dict[str, Any]]) -> None:
    """The OpenAPI document with the served model's row (columns, types, ranges, an example), remade after a
    reload; the generic row when the card cannot be read."""
    base = app.openapi
    made: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        schema = base()
        served = state.door.served if state.door.ready else None
        ref = None if served is None else (served.name, served.version)
        if ref is not None and made.get("ref") != ref:
            try:
                row, example = row_schema(card_of(*ref), state.job.entity_key)
            except Exception as exc:  # noqa: BLE001 - the docs stay generic rather than fail
                log.warning("job %s: the OpenAPI row of %s v%s is generic: its card could not be read (%s)",
                            state.job.job_id, *ref, type(exc).__name__)
                row, example = ROW_SCHEMA, {state.job.entity_key: 1}
            schema.setdefault("components", {}).setdefault("schemas", {})["Row"] = row
            body = schema["paths"]["/v1/jobs/{job}:score"]["post"]["requestBody"]["content"][JSON]
            body["examples"] = {"one row": {"value": example}, "rows": {"value": {"rows": [example]}}}
            made["ref"] = ref
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault("Row", ROW_SCHEMA)
        return schema

    app.openapi = openapi


def _typed(function: Callable[..., Any], **types: Any) -> Callable[..., Any]:
    """``function`` with its annotations as objects: FastAPI reads them, and under ``from __future__ import
    annotations`` names imported inside a function (fastapi's own) cannot be found from their text."""
    function.__annotations__ = types
    return function


def _health_routes(app: Any, state: Handler) -> None:
    """Liveness, readiness and the metrics."""
    from fastapi import Response

    def live() -> Response:
        return Response(dumps({"status": "live"}), 200, media_type=JSON)

    def ready() -> Response:
        if not state.door.ready:
            return Response(dumps({"status": "not ready", "job": state.job.job_id}), 503, media_type=JSON)
        body = {"status": "ready", "job": state.job.job_id, "models": [
            {"name": n, "version": v} for n, v in served_models(state.door)]}
        arms = served_arms(state.door)
        if arms:  # model.split: each arm's version, and whether the champion scores its rows instead
            body["arms"] = [{"arm": arm, **about} for arm, about in arms.items()]
        return Response(dumps(body), 200, media_type=JSON)

    def metrics() -> Response:
        text, content_type = state.metrics.render()
        return Response(text, 200, media_type=content_type)

    app.add_api_route("/health/live", _typed(live, **{"return": Response}), tags=["health"],
                      summary="The process answers")
    app.add_api_route("/health/ready", _typed(ready, **{"return": Response}), tags=["health"],
                      summary="A verified model is loaded (503 until then)",
                      responses={503: {"description": "No verified model loaded yet"}})
    app.add_api_route("/metrics", _typed(metrics, **{"return": Response}), tags=["health"],
                      summary="Prometheus metrics (text exposition format)")


def _score_routes(app: Any, state: Handler) -> None:
    """The score paths: v1 (rows as JSON records) and v2 (the open inference protocol)."""
    from fastapi import Request, Response

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem, "description": "The body is not JSON"},
        401: {"model": Problem, "description": "No bearer token, or not one of the server's"},
        404: {"model": Problem, "description": "No such job on this server"},
        413: {"model": Problem, "description": "Over online.max_body_bytes or online.max_rows"},
        503: {"model": Problem, "description": "The record of answers is full (Retry-After), or no model yet"},
    }

    async def score(job: str, request: Request) -> Response:
        return await handle(state, request, job, rows_v1, lambda body: body)

    async def infer(job: str, request: Request) -> Response:
        return await handle(state, request, job, rows_v2, lambda body: v2_answer(body, job))

    types = {"job": str, "request": Request, "return": Response}
    app.add_api_route("/v1/jobs/{job}:score", _typed(score, **types), methods=["POST"], tags=["score"],
                      summary="Score one row or a list of rows", response_model=ScoreAnswer,
                      openapi_extra={"requestBody": SCORE_BODY},
                      responses={**errors, 422: {"model": ScoreAnswer, "description": "A single row quarantined "
                                                 "(with its reasons), or a body that is not rows (a Problem)"}})
    app.add_api_route("/v2/models/{job}/infer", _typed(infer, **types), methods=["POST"], tags=["score"],
                      summary="Score rows given as named tensors (open inference protocol V2)",
                      openapi_extra={"requestBody": V2_BODY}, responses=errors)


async def handle(state: Handler, request: Any, job: str, rows_of: Callable[[Any], tuple[list[Any], bool]],
                 shape: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """One score request: refused, failed or answered, always counted and with its request id."""
    from fastapi import Response

    started, received_at = time.perf_counter(), datetime.now(UTC)
    request_id = request_id_of(request)
    headers = {"X-Request-ID": request_id}
    results: list[Any] = []
    try:
        if state.tokens is not None:
            state.tokens.check(request.headers.get("authorization"))
        if job != state.job.job_id:
            raise Refused(404, "not_found", f"no job {job!r} on this server (it serves job {state.job.job_id})")
        raw = await state.body(request)
        code, body, results = await anyio.to_thread.run_sync(state.answer, raw, request_id, received_at, rows_of,
                                                       limiter=state.limiter())
        content = dumps(shape(body))
    except Refused as refused:
        code, content = refused.status, _problem(state, refused, request_id)
        headers.update(refused.headers)
    except RequestError as exc:  # the door's: a request it cannot read as rows (its message names no value)
        code, content = 422, _problem(state, Refused(422, "invalid", str(exc)), request_id)
    except Exception as exc:  # noqa: BLE001 - a client gets a 500 with the request id, never a traceback
        _log_failure(state.job.job_id, request_id, exc)
        code, content = 500, _problem(state, Refused(500, "internal", "the server failed to answer this request; "
                                                     f"its log has the error under request id {request_id}"),
                                      request_id)
    scored, seconds = sum(1 for r in results if r.status == "scored"), time.perf_counter() - started
    state.metrics.answered(code, seconds, scored, len(results) - scored)
    log.debug("job %s request %s: %d row(s) scored, %d quarantined, answered %d in %.1f ms", state.job.job_id,
              request_id, scored, len(results) - scored, code, seconds * 1000)
    return Response(content, code, headers=headers, media_type=JSON)


def _problem(state: Handler, refused: Refused, request_id: str) -> bytes:
    """A refusal's body (and its count, but a 404 or not-ready is not an error of the door)."""
    if refused.kind in ("auth", "too_large", "invalid", "queue_full", "internal"):
        state.metrics.error(refused.kind)
    if refused.status >= 500 or refused.kind == "auth":
        log.warning("job %s request %s refused %d (%s)", state.job.job_id, request_id, refused.status, refused.kind)
    return dumps({"request_id": request_id, "status": refused.status, "error": refused.kind,
                  "message": refused.message})


def _log_failure(job: str, request_id: str, exc: BaseException) -> None:
    """An unexpected failure, logged with its request id, class and where it happened (not its message, which
    may quote a row's values)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in reversed(frames[-4:]))
    log.error("job %s request %s failed with %s at %s", job, request_id, type(exc).__name__, where)

"""The online door over HTTP (issue 27): a real uvicorn on 127.0.0.1, a real httpx client, the demo-like job.

Refusals with their messages (401, 413, 400, 422, 404, 503), a quarantined row's reasons, a list of good and
bad rows, health, OpenAPI and the docs page, the metrics, scores equal to the door's bit for bit, every
answer in <output.table>_online, no token or row value in any log line; and once through `scoring serve`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pipeline.config import JobConfig, load_job
from pipeline.serve.door import Door
from pipeline.serve.server import Service
from pipeline.settings import THREAD_POOL_ENV
from pipeline.store import engines
from tests.conftest import ROOT, clean_customers, scoring_cli, write_job

TOKEN = "tok-7f3a9c1e5b2d4680"
OTHER_TOKEN = "tok-0000aaaa1111bbbb"
BAD_CHARGES = -4321.987  # a row value no log line may show
SCORE_PATH = "/v1/jobs/churn_test:score"


def rows(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` demo rows as JSON records (NaN as null), every one scored by the demo's contract."""
    records = clean_customers(n + 50, seed=seed).head(n).to_dict("records")
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def bad_row(seed: int = 5) -> dict[str, Any]:
    """A row the contract quarantines (monthly_charges below its declared minimum 0), with a key of its own."""
    return {**rows(1, seed=seed)[0], "customer_id": 990_001, "monthly_charges": BAD_CHARGES}


def serve_job(home: Path, **online: Any) -> JobConfig:
    """The demo-like job with an ``online:`` block."""
    return load_job(write_job(home, online=online) if online else write_job(home))


@contextlib.contextmanager
def running(job: JobConfig, tokens: list[str] | None = None, close_timeout: float = 10, **kw: Any) -> Iterator[Service]:
    """The job's door served by uvicorn in a thread on a free port of 127.0.0.1; stopped and flushed after."""
    service = Service(job, host="127.0.0.1", port=0, tokens=[TOKEN] if tokens is None else tokens, **kw)
    service.open()
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not service.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield service
    finally:
        service.stop()
        thread.join(30)
        service.close(close_timeout)


def client(service: Service, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{service.port}", headers=headers, timeout=30)


@pytest.fixture
def served(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The door with online limits small enough to test, scoring two requests at once at most."""
    monkeypatch.setenv("SCORING_SERVE_CONCURRENCY", "2")
    with running(serve_job(home, max_rows=5, max_body_bytes=4096, queue_records=10_000)) as service:
        yield service


def test_a_request_without_a_token_or_with_a_wrong_one_is_refused_401(served: Service) -> None:
    with client(served, token=None) as http:
        missing = http.post(SCORE_PATH, json=rows(1)[0])
        wrong = http.post(SCORE_PATH, json=rows(1)[0], headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        basic = http.post(SCORE_PATH, json=rows(1)[0], headers={"Authorization": f"Basic {TOKEN}"})
    assert missing.status_code == wrong.status_code == basic.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert missing.json()["message"].startswith("missing bearer token: send the header 'Authorization: Bearer")
    assert wrong.json()["message"] == "the bearer token is not one of the server's tokens (see its tokens file)"
    assert missing.json()["error"] == "auth" and missing.json()["request_id"] == missing.headers["X-Request-ID"]
    assert OTHER_TOKEN not in wrong.text


def test_a_body_or_a_row_count_over_the_job_limits_is_refused_413(served: Service) -> None:
    big = json.dumps(rows(40)).encode()
    assert len(big) > 4096

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bytes actually read are counted
        for start in range(0, len(big), 1000):
            yield big[start:start + 1000]

    with client(served) as http:
        declared = http.post(SCORE_PATH, content=big, headers={"Content-Type": "application/json"})
        streamed = http.post(SCORE_PATH, content=chunked(), headers={"Content-Type": "application/json"})
        many = http.post(SCORE_PATH, json=rows(6))
        five = http.post(SCORE_PATH, json=rows(5))
    assert "content-length" not in streamed.request.headers
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["message"] == ("the request body is larger than 4096 bytes, the most job churn_test "
                                            "takes (online.max_body_bytes in its job file): send fewer rows per "
                                            "request")
    assert many.status_code == 413
    assert many.json()["message"] == ("the request has 6 rows; job churn_test takes at most 5 per request "
                                      "(online.max_rows in its job file): split it")
    assert five.status_code == 200 and len(five.json()["results"]) == 5


def test_a_single_quarantined_row_is_422_with_its_reasons_and_a_list_scores_its_good_rows(served: Service) -> None:
    good = rows(3)
    with client(served) as http:
        single = http.post(SCORE_PATH, json=bad_row(), headers={"X-Request-ID": "req-single-1"})
        mixed = http.post(SCORE_PATH, json={"rows": [good[0], bad_row(), good[1]]})
        listed = http.post(SCORE_PATH, json=[bad_row()])
        one = http.post(SCORE_PATH, json=good[2])
    assert single.status_code == 422 and re.fullmatch(r"req-single-1:[0-9a-f]{12}", single.headers["X-Request-ID"])
    body = single.json()
    assert body["request_id"] == single.headers["X-Request-ID"] and body["model"] == {"name": "churn", "version": 1}
    [result] = body["results"]
    assert result["status"] == "quarantined" and result["score"] is None and result["prediction"] is None
    assert "be_between:monthly_charges" in result["reasons"] and result["key"] == bad_row()["customer_id"]

    assert mixed.status_code == 200
    answers = mixed.json()["results"]
    assert [(r["index"], r["status"]) for r in answers] == [(0, "scored"), (1, "quarantined"), (2, "scored")]
    assert [r["key"] for r in answers] == [good[0]["customer_id"], bad_row()["customer_id"], good[1]["customer_id"]]
    assert all(0.0 <= r["score"] <= 1.0 and r["prediction"] is not None and r["reasons"] == []
               for r in (answers[0], answers[2]))
    assert answers[1]["reasons"] == result["reasons"]
    assert all(r["model"] == {"name": "churn", "version": 1} for r in answers)
    assert listed.status_code == 200 and listed.json()["results"][0]["status"] == "quarantined"  # a list: 200
    assert one.status_code == 200 and one.json()["results"][0]["status"] == "scored"
    assert len(one.headers["X-Request-ID"]) == 32 and one.json()["request_id"] == one.headers["X-Request-ID"]


def test_a_body_that_is_not_json_or_not_rows_is_refused_with_a_clear_message(served: Service) -> None:
    with client(served) as http:
        broken = http.post(SCORE_PATH, content=b'{"customer_id": 1,', headers={"Content-Type": "application/json"})
        numbers = http.post(SCORE_PATH, json=[1, 2])
        deep = http.post(SCORE_PATH, content=b"[" * 2000 + b"]" * 2000, headers={"Content-Type": "application/json"})
        text = http.post(SCORE_PATH, json="a row?")
        empty = http.post(SCORE_PATH, json=[])
        unknown = http.post("/v1/jobs/other_job:score", json=rows(1)[0])
        ragged = http.post("/v2/models/churn_test/infer", json={"inputs": [
            {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [1, 2]},
            {"name": "age", "shape": [1], "datatype": "FP64", "data": [30.0]}]})
        no_inputs = http.post("/v2/models/churn_test/infer", json={"outputs": []})
    assert broken.status_code == 400
    assert broken.json()["message"].startswith("the body is not JSON (line 1, column 19: Expecting property name")
    assert deep.status_code == 400 and deep.json()["message"] == "the body nests lists or objects too deep to be rows"
    assert numbers.status_code == 422 and numbers.json()["message"] == "row 0 is a number, not an object of column: value"
    assert text.status_code == 422 and text.json()["message"].startswith("the body is a string: send one row")
    assert empty.status_code == 422 and empty.json()["message"].startswith("the request holds no rows")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "no job 'other_job' on this server (it serves job churn_test)"
    assert ragged.status_code == 422 and ragged.json()["message"].startswith("the inputs have different lengths")
    assert no_inputs.status_code == 422 and no_inputs.json()["message"].startswith('the body has no "inputs"')


def test_health_openapi_docs_and_metrics_are_open_and_say_what_they_should(served: Service) -> None:
    with client(served) as http:
        http.post(SCORE_PATH, json=rows(3))
        http.post(SCORE_PATH, json=bad_row())
        http.post(SCORE_PATH, json=rows(1)[0], headers={"Authorization": "Bearer nope"})
        http.post(SCORE_PATH, json=rows(6))
    with client(served, token=None) as http:
        live, ready = http.get("/health/live"), http.get("/health/ready")
        spec, docs, metrics = http.get("/openapi.json"), http.get("/docs"), http.get("/metrics")
    assert live.status_code == 200 and live.json() == {"status": "live"}
    assert ready.status_code == 200 and ready.json()["models"] == [{"name": "churn", "version": 1}]
    paths = spec.json()["paths"]
    assert {"/v1/jobs/{job}:score", "/v2/models/{job}/infer", "/health/ready"} <= set(paths)
    operation = paths["/v1/jobs/{job}:score"]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ScoreAnswer")
    assert len(operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]) == 3
    schemas = spec.json()["components"]["schemas"]
    assert {"ScoreAnswer", "RowAnswer", "Problem", "Row"} <= set(schemas)
    row = schemas["Row"]  # the served model's inputs, from its card
    assert row["properties"]["monthly_charges"] == {"type": "number", "minimum": 0, "maximum": 5000}
    assert row["properties"]["plan"]["enum"] == ["basic", "premium", "standard"]
    assert row["properties"]["age"]["type"] == ["number", "null"] and "customer_id" in row["properties"]
    example = operation["requestBody"]["content"]["application/json"]["examples"]["one row"]["value"]
    assert example["monthly_charges"] == 2500.0 and example["contract_type"] == "month-to-month"
    with client(served) as http:
        tried = http.post(SCORE_PATH, json=example)  # the page's example is a row the model scores
    assert tried.status_code == 200 and tried.json()["results"][0]["status"] == "scored", tried.text
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower() and "/openapi.json" in docs.text
    text = metrics.text
    for line in ('scoring_online_requests_total{code="200",job="churn_test"} 1.0',
                 'scoring_online_requests_total{code="422",job="churn_test"} 1.0',
                 'scoring_online_requests_total{code="401",job="churn_test"} 1.0',
                 'scoring_online_requests_total{code="413",job="churn_test"} 1.0',
                 'scoring_online_rows_total{job="churn_test",outcome="scored"} 3.0',
                 'scoring_online_rows_total{job="churn_test",outcome="quarantined"} 1.0',
                 'scoring_online_errors_total{job="churn_test",kind="auth"} 1.0',
                 'scoring_online_errors_total{job="churn_test",kind="too_large"} 1.0',
                 'scoring_online_errors_total{job="churn_test",kind="queue_full"} 0.0',
                 'scoring_online_request_seconds_count{job="churn_test"} 4.0',
                 'scoring_online_model_version{job="churn_test",model="churn"} 1.0',
                 'scoring_online_ready{job="churn_test"} 1.0',
                 'scoring_online_reload_failures_total{job="churn_test"} 0.0'):
        assert line in text, line
    assert 'scoring_online_queue_records{job="churn_test"}' in text
    assert 'scoring_online_records_written_total{job="churn_test"}' in text
    assert 'scoring_online_record_failures_total{job="churn_test"} 0.0' in text


def test_each_scoring_thread_predicts_with_one_openmp_and_blas_thread(served: Service) -> None:
    from threadpoolctl import threadpool_info

    seen: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: (served.limit(), seen.extend(threadpool_info())))  # a new thread
    worker.start()
    worker.join(30)
    pools = {(p["user_api"], p["num_threads"]) for p in seen}
    assert ("openmp", 1) in pools and {n for _, n in pools} == {1}, seen


def test_scores_through_http_are_the_doors_bit_for_bit_and_v2_says_the_same(served: Service) -> None:
    records = [*rows(4, seed=9), bad_row()]
    door = Door(served.job)
    door.load()
    expected = door.score(records, "direct")
    with client(served) as http:
        v1 = http.post(SCORE_PATH, json=records).json()["results"]
        v2 = http.post("/v2/models/churn_test/infer", json={"inputs": [
            {"name": name, "shape": [len(records)], "datatype": "BYTES",
             "data": [r[name] for r in records]} for name in records[0]]})
    assert [(r["key"], r["status"], r["score"], r["prediction"], r["reasons"], r["flags"]) for r in v1] == \
        [(e.key, e.status, e.score, e.prediction, e.reasons, e.flags) for e in expected]
    assert all(isinstance(r["score"], float) for r in v1[:4]), v1  # floats, read back from JSON text, compared with ==
    assert v2.status_code == 200
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["score"] == [e.score for e in expected] and outputs["status"][-1] == "quarantined"
    assert outputs["reasons"][-1] == ";".join(expected[-1].reasons)
    assert v2.json()["model_name"] == "churn_test" and v2.json()["model_version"] == "1"


@pytest.mark.parametrize("any_db", ["sqlite", "postgresql"], indirect=True)
def test_every_answer_is_recorded_with_its_request_id(any_db: str, home: Path) -> None:
    job = load_job(write_job(home, drift={"min_rows": 1}))
    with running(job) as service, client(service) as http:
        ids = [http.post(SCORE_PATH, json=payload, headers={"X-Request-ID": f"rec-{n % 2}"}).headers["X-Request-ID"]
               for n, payload in enumerate((rows(3), bad_row(), rows(2, seed=4)))]  # rec-0 twice: two answers
    # close() flushed the recorder: every answered row is in the table
    with engines.engine_for(os.environ["AIRFLOW_CONN_SCORING_DB"]).connect() as conn:
        got = conn.execute(sa.text("SELECT request_id, row_index, status, score FROM churn_test_predictions_online "
                                   "ORDER BY request_id, row_index")).all()
    assert len(set(ids)) == 3 and [i.split(":")[0] for i in ids] == ["rec-0", "rec-1", "rec-0"]
    assert sorted((r.request_id, r.row_index, r.status) for r in got) == sorted([
        (ids[0], 0, "scored"), (ids[0], 1, "scored"), (ids[0], 2, "scored"), (ids[1], 0, "quarantined"),
        (ids[2], 0, "scored"), (ids[2], 1, "scored")])
    # the day's online traffic judged for drift as the batch judges a partition (pipeline.serve.drift)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    out = scoring_cli("online", "drift", "churn_test", "--date", today)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["model", "feature", "kind", "value", "rows", "drifted"], out.stdout + out.stderr
    assert any(line.startswith("churn v1") and " tenure_months " in f" {line} " for line in lines[1:]), out.stdout


def test_records_left_at_stop_are_counted_and_replayed_by_the_command(
        home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ELSEWHERE", "postgresql://nobody@127.0.0.1:9/nowhere")  # nothing listens
    job = load_job(write_job(home, output={"table": "churn_test_predictions", "connection": "elsewhere"}))
    with running(job, close_timeout=1) as service, client(service) as http:
        answered = http.post(SCORE_PATH, json=rows(4))
    assert answered.status_code == 200  # the database is down: the answer is given, its record waits
    assert any(r.levelname == "ERROR" and r.getMessage().startswith(
        "job churn_test: stopped with 4 answered row(s) not written to churn_test_predictions_online")
        for r in caplog.records), server_log(caplog)
    monkeypatch.setenv("AIRFLOW_CONN_ELSEWHERE", f"sqlite:///{home / 'elsewhere.db'}")
    engines.engine_for.cache_clear()
    out = scoring_cli("online", "replay", "churn_test", "--timeout", "20")
    assert out.returncode == 0, out.stderr
    assert out.stdout == ("churn_test: 4 dead-lettered online record(s) loaded into churn_test_predictions_online, "
                          "0 dead-lettered again\n")
    with engines.engine_for(f"sqlite:///{home / 'elsewhere.db'}").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM churn_test_predictions_online")).scalar() == 4


def test_a_cascade_is_served_with_its_router_and_the_route_model_of_each_row(cascade_home: Path) -> None:
    job = load_job(write_job(cascade_home, model={"name": "segments"}, output={
        "table": "cascade_predictions", "connection": "scoring_db"}, cascade={"routes": {
            "frequent": {"name": "churn_frequent"}, "occasional": {"name": "churn_occasional"}}}))
    with running(job) as service, client(service) as http:
        answer = http.post("/v1/jobs/churn_test:score", json=rows(20))
        metrics = http.get("/metrics").text
        ready = http.get("/health/ready").json()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == {"name": "segments", "version": 1}  # the job's model: the router
    routed = {r["model"]["name"] for r in body["results"] if r["status"] == "scored"}
    assert routed and routed <= {"churn_frequent", "churn_occasional", "segments"}, routed
    for name in ("segments", "churn_frequent", "churn_occasional"):
        assert f'scoring_online_model_version{{job="churn_test",model="{name}"}} 1.0' in metrics
    assert [m["name"] for m in ready["models"]] == ["segments", "churn_frequent", "churn_occasional"]


def test_a_full_record_queue_refuses_503_and_answers_nothing_unrecorded(home: Path) -> None:
    with running(serve_job(home, queue_records=2)) as service, client(service) as http:
        full = http.post(SCORE_PATH, json=rows(3))
        fits = http.post(SCORE_PATH, json=rows(1)[0])
        metrics = http.get("/metrics").text
    assert full.status_code == 503 and full.headers["Retry-After"] == "5"
    assert full.json()["error"] == "queue_full" and "no answer is given without its record" in full.json()["message"]
    assert fits.status_code == 200
    assert 'scoring_online_errors_total{job="churn_test",kind="queue_full"} 1.0' in metrics


class FailingDoor(Door):
    """The real door, failing inside a request with a message that quotes a row's value (as a library might)."""

    def score(self, records: list[dict[str, Any]], request_id: str) -> Any:
        raise ValueError(f"could not convert {records[0]['monthly_charges']} in {TOKEN}")


def test_a_failure_inside_is_a_500_with_the_request_id_and_a_log_line_without_values(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    job = serve_job(home)
    with running(job, door=FailingDoor(job)) as service, client(service) as http:
        answer = http.post(SCORE_PATH + "?token=" + OTHER_TOKEN, json=bad_row(), headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500
    rid = answer.headers["X-Request-ID"]
    assert rid.startswith("boom-1:") and answer.json() == {
        "request_id": rid, "status": 500, "error": "internal", "message":
        f"the server failed to answer this request; its log has the error under request id {rid}"}
    failed = [r.getMessage() for r in caplog.records if "failed with" in r.getMessage()]
    assert len(failed) == 1 and f"request {rid} failed with ValueError at test_serve_app.py" in failed[0]
    _no_secret_in(server_log(caplog))
    assert 'POST /v1/jobs/churn_test%3Ascore HTTP/1.1" 500' in server_log(caplog)  # the access line: no query


SERVER_LOGGERS = ("pipeline", "uvicorn", "fastapi", "starlette", "great_expectations", "sqlalchemy")


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test's own httpx client logs its URLs: not the server's lines)."""
    return "\n".join(f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records
                     if r.name.split(".")[0] in SERVER_LOGGERS)


def _no_secret_in(text: str) -> None:
    for secret in (TOKEN, OTHER_TOKEN, str(BAD_CHARGES), str(-BAD_CHARGES), "Bearer", "Authorization"):
        assert secret not in text, secret


def test_no_token_or_row_value_reaches_the_logs(served: Service, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with client(served) as http:
        http.post(SCORE_PATH, json=bad_row())
        http.post(SCORE_PATH, json=[bad_row(), rows(1)[0]])
        http.post(SCORE_PATH, json=[bad_row()] * 6)
        http.post(SCORE_PATH, content=b'{"monthly_charges": -4321.987,', headers={"X-Request-ID": "x" * 200})
        http.post(SCORE_PATH, json=bad_row(), headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert 'POST /v1/jobs/churn_test%3Ascore HTTP/1.1" 422' in server_log(caplog)  # (httpx quotes the colon)
    _no_secret_in(server_log(caplog))


# -- the command -----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scoring_serve_refuses_to_start_without_tokens_or_open_to_others(home: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_POOL_ENV:  # what `scoring serve` sets when unset: restored after this in-process test
        monkeypatch.setenv(name, "1")
    write_job(home)
    empty = home / "empty-tokens"
    empty.write_text("# no token yet\n\n")
    cases = {
        (): "error: scoring serve needs bearer tokens: give --tokens-file FILE",
        ("--tokens-file", str(empty)): f"error: tokens file {empty} holds no token: the server refuses to start",
        ("--tokens-file", str(home / "missing")): f"error: tokens file {home / 'missing'} cannot be read",
        ("--no-auth", "--host", "0.0.0.0"): "error: --no-auth is allowed on 127.0.0.1 (or localhost, ::1) only",
    }
    for extra, message in cases.items():
        out = scoring_cli("serve", "churn_test", "--port", str(_free_port()), *extra)
        assert out.returncode == 2 and out.stderr.startswith(message), (extra, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = scoring_cli("serve", "churn_test", "--no-auth", "--port", str(port))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address already in use)")
    monkeypatch.setenv("SCORING_SERVE_TOKENS_FILE", str(empty))  # the file named by the environment: the same
    out = scoring_cli("serve", "churn_test", "--port", str(_free_port()))
    assert out.returncode == 2 and out.stderr.startswith(f"error: tokens file {empty} holds no token")
    nowhere = load_job(write_job(home, "no_table", output={"mode": "push", "push": {"sink": {
        "kind": "files", "uri": str(home / "out")}}}))
    out = scoring_cli("serve", str(home / "jobs" / "no_table.yaml"), "--no-auth")
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: job {nowhere.job_id} has no output.table: scoring serve records every")


def test_scoring_serve_refuses_a_tampered_model_with_the_runs_own_error(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_POOL_ENV:
        monkeypatch.setenv(name, "1")
    write_job(home)
    artifact = home / "models" / "churn" / "v1" / "model.joblib"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    out = scoring_cli("serve", "churn_test", "--no-auth", "--port", str(_free_port()))
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "sha256" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "churn" in out.stderr


def test_scoring_serve_as_a_process_scores_refuses_and_stops_with_every_answer_recorded(home: Path) -> None:
    write_job(home)
    tokens = home / "tokens"
    tokens.write_text(f"# the door's tokens\n{TOKEN}\n\n{OTHER_TOKEN}\n")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "churn_test", "--port", str(port),
                             "--tokens-file", str(tokens)], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            _wait_ready(http, proc)
            scored = http.post(SCORE_PATH, json=rows(2), headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
            refused = http.post(SCORE_PATH, json=bad_row(), headers={"Authorization": f"Bearer {TOKEN}"})
            anonymous = http.post(SCORE_PATH, json=bad_row())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert scored.status_code == 200 and [r["status"] for r in scored.json()["results"]] == ["scored", "scored"]
    assert refused.status_code == 422 and anonymous.status_code == 401
    assert proc.returncode == 0, err
    assert f"job churn_test: serving churn v1 on http://127.0.0.1:{port} (2 bearer token(s)" in err
    assert "every answered row is written to churn_test_predictions_online" in err
    assert "Traceback" not in err
    _no_secret_in(err + out)
    with engines.engine_for(os.environ["AIRFLOW_CONN_SCORING_DB"]).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM churn_test_predictions_online")).scalar() == 3


def _wait_ready(http: httpx.Client, proc: subprocess.Popen) -> None:
    """Poll /health/ready until the server answers 200 (the process must stay alive meanwhile)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        with contextlib.suppress(httpx.TransportError):
            if http.get("/health/ready").status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("scoring serve was not ready within 90 s")

"""No secret in a log line, an error text, a table, a dead-letter file or a report (issue 13).

A password planted in a webhook URL's user info and a token planted as a ``?token=`` query
parameter are sent to a real HTTP receiver (they must reach it: the request is made with
them) and then looked for everywhere the pipeline writes: every captured log record (DEBUG,
all loggers but the receiver's own access log), the raised errors, every row of the ledger,
delivery and quarantine tables, every dead-letter file and every report file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pipeline import local, push
from pipeline.config import load_job
from pipeline.demo.receiver import Receiver
from pipeline.errors import DeliveryError
from pipeline.store import engines
from tests.conftest import DAY, write_job, write_partition

PASSWORD = "S3cretPlanted"
TOKEN = "T0kenPlanted"
TABLES = ("scoring_runs", "scoring_deliveries", "scoring_quarantine")
# the receiver is the downstream system (another process in real life): it is given the token and
# its access log quotes the request line; it is the one logger not searched
RECEIVER_LOGGER = "pipeline.receiver"


def _job(home: Path) -> Any:
    sink = {"kind": "webhook", "connection": "promo_hook", "endpoint": f"/offers?token={TOKEN}&team=crm",
            "batch_rows": 200, "max_attempts": 2, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02,
            "give_up_after_failed_batches": 2}
    return load_job(write_job(home, output={"mode": "push", "connection": "scoring_db", "push": {"sink": sink}}))


def _connect(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The base URL with credentials in it (Airflow's JSON form, the host a whole URL)."""
    monkeypatch.setenv("AIRFLOW_CONN_PROMO_HOOK", json.dumps(
        {"conn_type": "http", "host": f"http://user:{PASSWORD}@127.0.0.1:{port}"}))


def _leaks(text: str) -> list[str]:
    return [s for s in (PASSWORD, TOKEN) if s in text]


def _tables(engine: sa.Engine) -> dict[str, list[str]]:
    """Every row of the tables the pipeline writes, as text."""
    with engine.connect() as conn:
        return {t: [json.dumps(dict(r), default=str) for r in conn.execute(sa.text(f"SELECT * FROM {t}")).mappings()]
                for t in TABLES}


def _files(folder: Path) -> dict[str, str]:
    """Every text file (JSON, HTML) under a folder; Parquet files hold rows only, read as bytes."""
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()}


def _where_leaked(caplog: pytest.LogCaptureFixture, engine: sa.Engine, home: Path, errors: list[str],
                  ledger_field: list[str]) -> dict[str, list[str]]:
    """Each place still holding a planted secret (scoring_runs' error and warnings apart, in ``ledger_field``)."""
    found: dict[str, list[str]] = {}
    for record in caplog.records:
        if record.name == RECEIVER_LOGGER:
            continue
        text = caplog.handler.format(record)  # the line as printed, with its traceback if any
        if _leaks(text):
            found.setdefault("log", []).append(f"{record.name}: {text[:300]}")
    for table, rows in _tables(engine).items():
        for row in rows:
            if not _leaks(row):
                continue
            doc = json.loads(row)
            other = {k: v for k, v in doc.items() if k not in ("error", "warnings")}
            if table == "scoring_runs" and not _leaks(json.dumps(other, default=str)):
                ledger_field.append(row[:300])
            else:
                found.setdefault(table, []).append(row[:300])
    for where in ("deadletter", "reports"):
        for path, text in _files(home / where).items():
            if _leaks(text):
                found.setdefault(where, []).append(path)
    for text in errors:
        if _leaks(text):
            found.setdefault("errors", []).append(text[:300])
    return found


def test_planted_secrets_appear_nowhere(any_db: str, home: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    write_partition(home, n=700)
    job = _job(home)
    engine = engines.for_connection("scoring_db")
    down = Receiver()  # bound, never started, then closed: connections are refused
    port = down.port
    down.server.server_close()
    _connect(monkeypatch, port)
    errors: list[str] = []
    with pytest.raises(DeliveryError) as err:
        local.run_partition(job, DAY, run_id="down")
    errors.append(str(err.value))
    assert "were not delivered to webhook:http://***@127.0.0.1" in str(err.value)
    assert "/offers?token=***&team=crm" in str(err.value) and "connection failed" in str(err.value)
    with pytest.raises(DeliveryError) as err:  # a re-drive while the receiver is still down
        push.redrive(engine, job, DAY, sleep=lambda _: None)
    errors.append(str(err.value))
    dead = _files(home / "deadletter")
    assert any(p.endswith(".json") for p in dead), "the down run must have dead-lettered batches"
    ledger_field: list[str] = []
    leaked = _where_leaked(caplog, engine, home, errors, ledger_field)
    caplog.clear()  # the records of the second run are searched next

    with Receiver(port=port) as receiver:  # back on the same port: the re-run delivers everything
        summary = local.run_partition(job, DAY, run_id="up")
        posts = receiver.store.posts
    assert summary["status"] == "success" and summary["rows_dead_lettered"] == 0
    assert summary["rows_delivered"] == summary["rows_scored"] > 0
    assert summary["sink"] == f"webhook:http://***@127.0.0.1:{port}/offers?token=***&team=crm"
    assert posts and posts[0].headers["Authorization"].startswith("Basic ")  # the credentials were used
    for name, text in dead.items():  # removed once delivered: checked as they were
        if _leaks(text):
            leaked.setdefault("deadletter (down run)", []).append(name)
    for where, items in _where_leaked(caplog, engine, home, [], ledger_field).items():
        leaked.setdefault(where, []).extend(items)
    assert _tables(engine)["scoring_deliveries"], "the delivery state must have been written"
    assert list((home / "reports").rglob("*.html")), "the run must have written its report"
    assert not leaked, json.dumps(leaked, indent=1)
    assert not ledger_field, "only scoring_runs.error/warnings hold a secret: " + json.dumps(ledger_field)


def test_the_first_line_of_a_bad_connection_is_a_clear_error(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import ConfigError

    write_partition(home, n=300)
    job = _job(home)
    monkeypatch.setenv("AIRFLOW_CONN_PROMO_HOOK", f"http://user:{PASSWORD}@127.0.0.1:notaport/x")
    with pytest.raises(ConfigError) as err:
        local.run_partition(job, DAY, run_id="badport")
    message = str(err.value)
    assert message.startswith("AIRFLOW_CONN_PROMO_HOOK: connection 'promo_hook' is not a valid connection URI")
    assert "the port 'notaport' after the host is not a number" in message and PASSWORD not in message
    engine = engines.for_connection("scoring_db")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, error FROM scoring_runs WHERE run_id = 'badport'")).one()
    assert row.status == "failed" and "notaport" in row.error and PASSWORD not in row.error

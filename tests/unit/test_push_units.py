"""Push mode's pure parts: connections, URLs, auth, Retry-After, keys, the retry policy, job files."""

from __future__ import annotations

import datetime as dt
import email.utils
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from pipeline import push
from pipeline.config import FilesSinkConfig, WebhookSinkConfig, parse_job
from pipeline.connections import Conn, from_uri, get
from pipeline.errors import ConfigError
from pipeline.sinks import Batch, DeliveryFailed, Sink
from pipeline.sinks.broker import amqp_url, redis_url
from pipeline.sinks.webhook import auth_headers, base_url, retry_after_seconds
from pipeline.store import engines, migrate, operational, sqlfiles

ROOT = Path(__file__).resolve().parents[2]


def test_connection_uri_and_json_forms() -> None:
    c = from_uri("x", "https://user:p%40ss@api.example.com:8443/v1?timeout=5")
    assert (c.conn_type, c.host, c.login, c.password, c.port, c.schema) == (
        "https", "api.example.com", "user", "p@ss", 8443, "v1")
    assert c.extra == {"timeout": "5"} and "p@ss" not in repr(c)
    j = from_uri("y", '{"conn_type": "http", "host": "127.0.0.1", "port": 9000, "password": "t", '
                      '"extra": {"headers": {"X-Team": "crm"}}}')
    assert (j.host, j.port, j.password, j.extra["headers"]) == ("127.0.0.1", 9000, "t", {"X-Team": "crm"})


def test_a_malformed_connection_uri_does_not_echo_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LEAKY", "http://:s3cr3t/T0k3n@host:8099")
    with pytest.raises(ConfigError, match="must be URL-encoded") as err:
        get("leaky")
    assert "s3cr3t" not in str(err.value)


@pytest.mark.parametrize(("uri", "says"), [
    ("http://h:notaport/x", "the port after the host is not a number"),
    ("http://user:S3cretPlanted@h:notaport/x", "the port 'notaport' after the host is not a number"),
    ("http://user:S3cretPlanted@h:99999", "the port '99999' after the host is out of range"),
    ("http://user:S3cretPlanted", "the port after the host is not a number"),  # no host: never quoted
    ("http://:S3cretPlanted/x@host:8099", "must be URL-encoded"),
    ("http://user:S3cret#Planted@host", "must be URL-encoded"),
    ("http://[::1/S3cretPlanted", "Invalid IPv6 URL"),
    ("garbage S3cretPlanted", "it has no type"),
    ("://S3cretPlanted@h", "it has no type"),
    ('{"host": "h", "password": "S3cretPlanted", "port": "80a"}', "its port '80a' is not a number"),
    ('{"host": "h", "password": "S3cretPlanted",', "the JSON form is not valid JSON"),
    ('{"host": "h", "password": "S3cretPlanted", "extra": "{bad"}', "its 'extra' is not valid JSON"),
    ('{"host": "h", "password": "S3cretPlanted", "extra": [1]}', "its 'extra' must be a JSON object"),
    ("http://h/?__extra__=%7Bx&password=S3cretPlanted", "its __extra__ is not valid JSON"),
])
def test_malformed_connection_uris_say_what_is_wrong_without_the_password(
        uri: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as err:
        from_uri("promo_hook", uri)
    message = str(err.value)
    assert "connection 'promo_hook'" in message and says in message and "S3cretPlanted" not in message
    assert err.value.__cause__ is None  # no traceback of the parser's own error (which may quote the URI)
    assert err.value.__context__ is None or err.value.__suppress_context__
    monkeypatch.setenv("AIRFLOW_CONN_PROMO_HOOK", uri)
    for call in (lambda: get("promo_hook"), lambda: engines.resolve_url("promo_hook")):
        with pytest.raises(ConfigError) as err:
            call()
        assert err.value.args[0].startswith("AIRFLOW_CONN_PROMO_HOOK: ") and says in str(err.value)
        assert "S3cretPlanted" not in str(err.value)


def test_a_connection_repr_shows_no_password_or_extra() -> None:
    c = from_uri("x", "https://u:S3cretPlanted@h:1/v?token=T0kPlanted")
    assert c.port == 1 and c.extra == {"token": "T0kPlanted"}
    assert "S3cretPlanted" not in repr(c) and "T0kPlanted" not in repr(c)
    assert from_uri("v6", "http://u:p@[::1]:8099/db").port == 8099


def test_sink_targets_and_errors_carry_no_credentials() -> None:
    from pipeline.sinks.files import FilesSink
    from pipeline.sinks.webhook import WebhookSink

    conn = from_uri("hook", '{"conn_type": "http", "host": "http://user:S3cretPlanted@127.0.0.1:1"}')
    cfg = WebhookSinkConfig(kind="webhook", connection="hook", endpoint="/offers?token=T0kPlanted&team=crm",
                            timeout_seconds=2)
    with WebhookSink(cfg, conn) as sink:
        assert sink.url == "http://user:S3cretPlanted@127.0.0.1:1/offers?token=T0kPlanted&team=crm"  # sent as is
        assert sink.target == "webhook:http://***@127.0.0.1:1/offers?token=***&team=crm"
        batch = Batch("j", "2026-11-20", "m", 1, 0, 1, "k", 1, lambda: iter([pa.table({"a": [1]})]))
        with pytest.raises(DeliveryFailed) as err:
            sink.send(batch)  # port 1: connection refused
    assert "connection failed" in str(err.value) and err.value.retryable
    assert "S3cretPlanted" not in str(err.value) and "T0kPlanted" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert str(DeliveryFailed("POST http://u:pw@h/x?sig=abc: 500", retryable=True)) == "POST http://***@h/x?sig=***: 500"
    files = FilesSink(FilesSinkConfig(kind="files", uri="memory://u:S3cretPlanted@bucket/out"), None, "j")
    assert "S3cretPlanted" not in files.target
    with pytest.raises(ConfigError, match="cannot open") as err:
        FilesSink(FilesSinkConfig(kind="files", uri="nosuchproto://u:S3cretPlanted@b/x"), None, "j")
    assert "S3cretPlanted" not in str(err.value)


def test_missing_connection_says_how_to_create_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    with pytest.raises(ConfigError, match="AIRFLOW_CONN_NOPE"):
        get("nope")
    assert get("nope", lambda cid: Conn(cid, "http", "h")).host == "h"


@pytest.mark.parametrize(("conn", "url"), [
    (Conn("a", "http", "127.0.0.1", port=8099), "http://127.0.0.1:8099"),
    (Conn("a", "https", "api.example.com"), "https://api.example.com"),
    (Conn("a", "http", "api.example.com", schema="https"), "https://api.example.com"),  # HttpHook style
    (Conn("a", "http", "api.example.com", schema="hooks/v2"), "http://api.example.com/hooks/v2"),
    (Conn("a", "generic", "https://api.example.com/base/"), "https://api.example.com/base"),
])
def test_webhook_base_url(conn: Conn, url: str) -> None:
    assert base_url(conn) == url


def test_auth_headers_from_the_connection() -> None:
    assert auth_headers(Conn("a", password="tok")) == {"Authorization": "Bearer tok"}
    assert auth_headers(Conn("a", login="u", password="p"))["Authorization"] == "Basic dTpw"
    assert auth_headers(Conn("a", extra={"headers": {"X-Api-Key": "k"}})) == {"X-Api-Key": "k"}
    assert auth_headers(Conn("a")) == {}


def test_broker_urls_from_connections() -> None:
    assert amqp_url(Conn("m", "amqp", "127.0.0.1", "guest", "g/st")) == "amqp://guest:g%2Fst@127.0.0.1:5672/%2F"
    assert amqp_url(Conn("m", "amqp", "mq", schema="prod", port=5673)) == "amqp://mq:5673/prod"
    assert redis_url(Conn("r", "redis", "127.0.0.1", extra={"db": 2})) == "redis://127.0.0.1:6379/2"
    assert redis_url(Conn("r", "redis", "h", password="s")) == "redis://:s@h:6379/0"


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    assert 25 <= retry_after_seconds(email.utils.format_datetime(later, usegmt=True)) <= 31
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_idempotency_key_is_stable_and_specific() -> None:
    key = push.idempotency_key("job", "2026-11-20", "churn", 1, "plan", 3)
    assert key == push.idempotency_key("job", "2026-11-20", "churn", 1, "plan", 3)
    others = {push.idempotency_key(*args) for args in [
        ("job", "2026-11-21", "churn", 1, "plan", 3), ("job", "2026-11-20", "churn", 2, "plan", 3),
        ("job", "2026-11-20", "churn", 1, "other", 3), ("job", "2026-11-20", "churn", 1, "plan", 4),
        ("job2", "2026-11-20", "churn", 1, "plan", 3)]}
    assert key not in others and len(others) == 5


class Scripted(Sink):
    """A sink whose attempts fail as scripted: exercises the retry policy, not a transport."""

    def __init__(self, script: list[DeliveryFailed | None]) -> None:
        self.script = list(script)
        self.calls = 0

    @property
    def target(self) -> str:
        return "scripted"

    def send(self, batch: Batch) -> None:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome


def _batch() -> Batch:
    return Batch("j", "2026-11-20", "m", 1, 0, 1, "k", 1, lambda: iter([pa.table({"a": [1]})]))


def _cfg(**kw: Any) -> Any:
    return WebhookSinkConfig(kind="webhook", connection="c", **{"backoff_seconds": 1.0, "max_backoff_seconds": 8.0, **kw})


def test_retries_back_off_exponentially_and_honour_retry_after() -> None:
    sleeps: list[float] = []
    sink = Scripted([DeliveryFailed("500", retryable=True), DeliveryFailed("500", retryable=True),
                     DeliveryFailed("429", retryable=True, retry_after=5.0), DeliveryFailed("drop", retryable=True)])
    outcome = push.deliver(sink, _batch(), _cfg(), sleep=sleeps.append)
    assert outcome.delivered and outcome.attempts == 5 and sink.calls == 5
    assert 1.0 <= sleeps[0] <= 2.0 and 2.0 <= sleeps[1] <= 3.0  # initial 1 s doubling, + up to 1 s jitter
    assert sleeps[2] == 5.0  # Retry-After, not the backoff
    assert sleeps[3] == 8.0  # 8 s + jitter, capped at max_backoff_seconds


def test_a_4xx_is_not_retried_and_attempts_are_capped() -> None:
    sleeps: list[float] = []
    sink = Scripted([DeliveryFailed("HTTP 422: bad field", retryable=False)])
    outcome = push.deliver(sink, _batch(), _cfg(), sleep=sleeps.append)
    assert (outcome.delivered, outcome.attempts, outcome.permanent, sleeps) == (False, 1, True, [])
    assert "bad field" in (outcome.error or "")
    sink = Scripted([DeliveryFailed("503", retryable=True)] * 10)
    outcome = push.deliver(sink, _batch(), _cfg(max_attempts=3), sleep=sleeps.append)
    assert (outcome.delivered, outcome.attempts, outcome.permanent, sink.calls) == (False, 3, False, 3)


def _job(output: dict[str, Any]) -> Any:
    doc = yaml.safe_load((ROOT / "dags" / "jobs" / "promotions_daily.yaml").read_text())
    doc["output"] = output
    return parse_job(doc, Path("promotions_daily.yaml"))


def test_job_file_output_rules() -> None:
    with pytest.raises(ConfigError, match="mode 'push' needs output.push.sink"):
        _job({"mode": "push"})
    with pytest.raises(ConfigError, match="mode 'persist' needs output.table"):
        _job({"mode": "persist", "push": {"sink": {"kind": "files", "uri": "out"}}})
    with pytest.raises(ConfigError, match="does not match any of the expected tags: 'webhook', 'files'"):
        _job({"mode": "push", "push": {"sink": {"kind": "ftp"}}})
    # credentials never live in the job file: there is no key for them
    with pytest.raises(ConfigError, match="unknown key 'output.push.sink.webhook.password'"):
        _job({"mode": "push", "push": {"sink": {"kind": "webhook", "connection": "c", "password": "x"}}})
    job = _job({"mode": "push", "table": "t", "push": {"sink": {"kind": "files", "uri": "out"}}})
    assert job.output.modes == ["persist", "push"] and isinstance(job.output.push.sink, FilesSinkConfig)


def test_migrations_upgrade_an_old_ledger_once(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:  # a database made before push mode existed
        for stmt in sqlfiles.render_sql(conn, "001_scoring_runs.sql"):
            conn.exec_driver_sql(stmt)
    operational.ensure_ledger(engine)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("scoring_runs")}
    assert {"rows_delivered", "rows_dead_lettered", "rows_not_selected", "rows_failed", "sink"} <= columns
    assert "plan" in {c["name"] for c in sa.inspect(engine).get_columns("scoring_deliveries")}
    assert migrate.apply_migrations(engine) == []  # a second call applies nothing
    with engine.connect() as conn:
        applied = conn.execute(sa.text("SELECT COUNT(*) FROM scoring_schema_migrations")).scalar()
    assert applied == len(list((ROOT / "sql" / "migrations").glob("*.sql")))


def test_a_database_from_before_the_plan_column_is_upgraded(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'early.db'}")
    with engine.begin() as conn:  # deliveries and migrations as the first push-mode commit made them
        for name in ("001_scoring_runs.sql", "002_quarantine.sql", "003_deliveries.sql", "004_schema_migrations.sql",
                     "005_drift.sql"):
            for stmt in sqlfiles.render_sql(conn, name):
                conn.exec_driver_sql(stmt)
        conn.execute(sa.text("INSERT INTO scoring_schema_migrations VALUES ('001_push_counts.sql', '2026-11-21')"))
        for stmt in sqlfiles.statements((ROOT / "sql" / "migrations" / "001_push_counts.sql").read_text()):
            conn.exec_driver_sql(stmt)
    assert migrate.apply_migrations(engine) == ["002_deliveries_plan.sql", "003_run_warnings.sql", "004_run_leases.sql",
                                           "005_run_routes.sql", "007_run_breach.sql", "008_quarantine_typed_key.sql",
                                           "009_part_seconds.sql", "010_drift_source.sql", "011_ab_arms.sql",
                                           "012_ab_verdicts.sql", "013_model_audit.sql"]
    assert "plan" in {c["name"] for c in sa.inspect(engine).get_columns("scoring_deliveries")}


def test_delivery_state_is_stored_redacted_and_old_unredacted_rows_still_match(tmp_path: Path) -> None:
    from pipeline import deliveries

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    operational.ensure_ledger(engine)
    day, old = dt.date(2026, 11, 20), "webhook:http://u:S3cretPlanted@h:1/x?token=T0kPlanted"
    plan = {"job_id": "j", "partition_date": day, "plan_sig": "p", "keys": ["k0", "k1"], "row_counts": [5, 5],
            "model_name": "m", "model_version": 1}
    with engine.begin() as conn:  # as a run before redaction stored them: batch 0 delivered, 1 dead-lettered
        conn.execute(sa.text(
            "INSERT INTO scoring_deliveries (job_id, partition_date, batch_no, batch_count, idempotency_key, plan, "
            "sink, model_name, model_version, row_count, status, attempts, run_id, updated_at, last_error) VALUES "
            "('j', :d, :no, 2, :k, 'p', :s, 'm', 1, 5, :st, 1, 'r0', :t, :e)"),
            [{"d": day, "no": 0, "k": "k0", "s": old, "st": "delivered", "t": dt.datetime.now(dt.UTC), "e": None},
             {"d": day, "no": 1, "k": "k1", "s": old, "st": "dead_letter", "t": dt.datetime.now(dt.UTC),
              "e": f"POST {old[8:]}: refused"}])
    todo = deliveries.plan(engine, sink="webhook:http://***@h:1/x?token=***", run_id="r1", **plan)
    assert todo == [1]  # the same sink: the delivered batch is not sent again
    deliveries.mark(engine, job_id="j", partition_date=day, batch_no=1, status="dead_letter", attempts=1,
                    run_id="r1", key="k1", error=f"POST {old[8:]}: refused", sink=old)
    rows = deliveries.batches(engine, "j", day)
    assert [r["sink"] for r in rows] == ["webhook:http://***@h:1/x?token=***"] * 2
    assert rows[1]["last_error"] == "POST http://***@h:1/x?token=***: refused"

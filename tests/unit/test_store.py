from __future__ import annotations

import pytest

from pipeline.errors import ConfigError
from pipeline.store import engines, sqlfiles


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        ("postgresql://u:p@db:5432/scores", "postgresql+psycopg://u:p@db:5432/scores"),
        ("postgres://u@db/scores", "postgresql+psycopg://u@db/scores"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
        ('{"conn_type": "postgres", "host": "db", "login": "u", "schema": "s", "port": 5433}',
         "postgresql+psycopg://u@db:5433/s"),
        # a URI's whole query string is the caller's: libpq keys beyond Airflow's extras are kept
        ("postgresql:///db?host=/var/run/postgresql", "postgresql+psycopg:///db?host=%2Fvar%2Frun%2Fpostgresql"),
        ("postgresql://u@h/db?sslcert=/c.pem&keepalives=1&target_session_attrs=read-write",
         "postgresql+psycopg://u@h/db?keepalives=1&sslcert=%2Fc.pem&target_session_attrs=read-write"),
        ("sqlite:////abs/x.db?mode=ro", "sqlite:////abs/x.db?mode=ro"),
        ("postgresql://u:p%40x@h:5432/db?options=-csearch_path%3Ds1", "postgresql+psycopg://u:p%40x@h:5432/db?options=-csearch_path%3Ds1"),
    ],
)
def test_connection_uris(uri: str, url: str) -> None:
    assert engines.url_from_uri(uri) == url


def test_airflow_connection_fields_keep_libpq_extras() -> None:
    url = engines.url_from_connection("postgres", "db", "u", "p", 5432, "scores",
                                    {"sslmode": "require", "unrelated": "x"})
    assert url == "postgresql+psycopg://u:p@db:5432/scores?sslmode=require"


def test_unsupported_scheme() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        engines.url_from_uri("mysql://x@y/z")


def test_missing_connection_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    with pytest.raises(ConfigError, match="AIRFLOW_CONN_NOPE"):
        engines.resolve_url("nope")


def test_identifiers_are_validated_and_quoted() -> None:
    engine = engines.engine_for("sqlite://")
    stmts = sqlfiles.render_sql(engine, "010_predictions.sql", predictions="p", key="customer_id", key_type="int")
    assert 'CREATE TABLE IF NOT EXISTS p' in stmts[0] and "customer_id" in stmts[0] and "BIGINT" in stmts[0]
    with pytest.raises(ConfigError):
        sqlfiles.render_sql(engine, "010_predictions.sql", predictions="p; drop table x", key="k", key_type="int")

"""Redaction of credentials in URLs and free text (pipeline.redact)."""

from __future__ import annotations

import logging

import pytest

from pipeline.redact import RedactFilter, install, is_secret_name, redact, redact_url


@pytest.mark.parametrize(("text", "expected"), [
    # user info of every scheme the pipeline talks to
    ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://***@127.0.0.1:5672/%2F"),
    ("amqps://svc:pa%40ss@mq.example.com:5671/prod", "amqps://***@mq.example.com:5671/prod"),
    ("redis://:s3cret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
    ("rediss://default:s3cret@cache:6380", "rediss://***@cache:6380"),
    ("postgresql://scoring:pw@db:5432/analytics?sslmode=require",
     "postgresql://***@db:5432/analytics?sslmode=require"),
    ("postgresql+psycopg://u:p%2Fq@db/x", "postgresql+psycopg://***@db/x"),
    ("http://user:pass@127.0.0.1:8099/offers", "http://***@127.0.0.1:8099/offers"),
    ("https://:TOKEN@api.example.com", "https://***@api.example.com"),
    ("https://only-user@api.example.com/x", "https://***@api.example.com/x"),
    ("s3://AKIAXX:wJalr/XUt@bucket/key", "s3://***@bucket/key"),
    # passwords with unencoded '@', '/', '#'
    ("http://user:p@ss@host:80/x", "http://***@host:80/x"),
    ("http://user:pa/ss@host/x", "http://***@host/x"),
    ("http://user:pa#ss@host/x", "http://***@host/x"),
    # IPv6 hosts
    ("http://u:p@[::1]:8099/offers", "http://***@[::1]:8099/offers"),
    ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
    ("http://[::1]:8080/x?to=bob@example.com", "http://[::1]:8080/x?to=bob@example.com"),
    # secret query parameters (case-insensitive), others kept, order and encoding kept
    ("https://h/x?token=abc&a=1", "https://h/x?token=***&a=1"),
    ("https://h/x?a=1&TOKEN=abc#frag", "https://h/x?a=1&TOKEN=***#frag"),
    ("https://h/x?access_token=a&api_key=b&apikey=c&key=d&secret=e&password=f&sig=g&signature=h",
     "https://h/x?access_token=***&api_key=***&apikey=***&key=***&secret=***&password=***&sig=***&signature=***"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261120%2Fus"
     "&X-Amz-Date=20261120T000000Z&X-Amz-Signature=0f3a&X-Amz-Security-Token=FQo",
     "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
     "&X-Amz-Date=20261120T000000Z&X-Amz-Signature=***&X-Amz-Security-Token=***"),
    ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026&sig=AbC%3D",
     "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026&sig=***"),
    ("https://h/x?client_secret=a&refresh_token=b&my_api_key=c", "https://h/x?client_secret=***&refresh_token=***"
     "&my_api_key=***"),
    ("http://u:p@h/x?token=t", "http://***@h/x?token=***"),
    ("https://h/x?token=", "https://h/x?token="),
    # URLs inside sentences (exception messages)
    ("POST http://u:S3cret@127.0.0.1:8099/offers?token=T0k: connection failed: [Errno 111] Connection refused",
     "POST http://***@127.0.0.1:8099/offers?token=***: connection failed: [Errno 111] Connection refused"),
    ("HTTPConnectionPool(host='127.0.0.1', port=8099): Max retries exceeded with url: /offers?token=T0k "
     "(Caused by NewConnectionError('refused'))",
     "HTTPConnectionPool(host='127.0.0.1', port=8099): Max retries exceeded with url: /offers?token=*** "
     "(Caused by NewConnectionError('refused'))"),
    ("could not reach 'redis://:pw@cache:6379/0'.", "could not reach 'redis://***@cache:6379/0'."),
    ("<a href=\"https://u:p@h/x\">", "<a href=\"https://***@h/x\">"),
    ("first amqp://a:b@h1/v then postgresql://c:d@h2/db", "first amqp://***@h1/v then postgresql://***@h2/db"),
    # key=value, JSON pairs, auth headers
    ("host=db port=5432 password=hunter2 user=scoring", "host=db port=5432 password=*** user=scoring"),
    ('{"login": "u", "password": "hunter2", "host": "h"}', '{"login": "u", "password": "***", "host": "h"}'),
    ("{'token': 'abc', 'rows': 3}", "{'token': '***', 'rows': 3}"),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "Authorization: Bearer ***"),
    ("{'Authorization': 'Basic dXNlcjpwYXNz'}", "{'Authorization': 'Basic ***'}"),
    ("sent with bearer abcdef123456", "sent with bearer ***"),
])
def test_redact_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize("text", [
    "http://127.0.0.1:8099/offers",
    "https://api.example.com/v1/hooks?team=crm&batch=3",
    "amqp://127.0.0.1:5672/%2F",
    "redis://cache:6379/0",
    "postgresql://db:5432/analytics?options=-csearch_path%3Dx",
    "http://host:8080/x?to=bob@example.com",
    "files:/srv/out/churn_daily",
    "webhook:http://[::1]:8099/offers",
    "rabbitmq:127.0.0.1:5672/(default)/promotions",
    "[job=churn partition=2026-11-20 run=manual__1] push: 3 batches (600 rows) to webhook:http://h:1/x",
    "batch 1/3: Idempotency-Key 3f2a, routing key=promotions, partition key=2026",
    "mail ops@example.com about user:pass",
    'POST http://h/offers answered HTTP 401 Unauthorized: {"error": "missing or wrong bearer token"}',
    "the password is wrong; the token expired",
    "",
])
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text
    assert redact_url(text) == text


def test_none_and_non_text() -> None:
    assert redact(None) is None
    assert redact_url("http://u:p@h") == "http://***@h"


@pytest.mark.parametrize(("name", "in_query", "secret"), [
    ("Password", False, True), ("X-AMZ-SIGNATURE", False, True), ("github_token", False, True),
    ("api%5Fkey", False, True), ("key", True, True), ("key", False, False), ("routing_key", True, False),
    ("team", True, False), ("sig", True, True),
])
def test_secret_names(name: str, in_query: bool, secret: bool) -> None:
    assert is_secret_name(name, in_query=in_query) is secret


def test_the_logging_filter_redacts_message_arguments_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    logger = install(logging.getLogger("tests.redact"))
    install(logger)
    assert sum(isinstance(f, RedactFilter) for f in logger.filters) == 1  # installed once
    with caplog.at_level(logging.DEBUG, logger="tests.redact"):
        logger.info("push to %s", "http://user:S3cretPlanted@h:1/x?token=T0kPlanted")
        try:
            raise ValueError("connect to redis://:S3cretPlanted@cache:6379 failed")
        except ValueError:
            logger.exception("failed at %s", "amqp://a:S3cretPlanted@mq/")
        logger.debug("%d%% done, %d rows", 100, 5)  # formatted once: the message's '%' survives
        logger.debug("100% done")  # no arguments: not formatted, as logging does
    assert "S3cretPlanted" not in caplog.text and "T0kPlanted" not in caplog.text
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["push to http://***@h:1/x?token=***", "failed at amqp://***@mq/", "100% done, 5 rows",
                        "100% done"]
    assert "redis://***@cache:6379" in caplog.text  # the traceback is kept, redacted

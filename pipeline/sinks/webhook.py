"""HTTP webhook sink: POST each batch with an Idempotency-Key header."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from typing import Any

import requests

from pipeline.connections import Conn, auth_headers, base_url
from pipeline.errors import ConfigError
from pipeline.redact import install, redact_url
from pipeline.sinks.base import Batch, DeliveryFailed, Sink

CONTENT_TYPES = {"jsonl": "application/x-ndjson", "json": "application/json"}


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds of a Retry-After header (delta-seconds or an HTTP date), None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, e.g. '[Errno 111] Connection refused'."""
    current: BaseException = exc
    for _ in range(10):
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        current = inner
    return re.sub(r"^\w*Connection\(host=[^)]*\): ", "", str(current)) or type(current).__name__


class WebhookSink(Sink):
    """POST batches as JSON lines or a JSON array."""

    def __init__(self, cfg: Any, conn: Conn | None) -> None:
        if conn is None:
            raise ConfigError("the webhook sink needs a connection")
        endpoint = cfg.endpoint if not cfg.endpoint or cfg.endpoint.startswith("/") else "/" + cfg.endpoint
        self.url = base_url(conn) + endpoint  # may hold credentials (user info, ?token=): sent, never shown
        self.shown = redact_url(self.url)
        install("urllib3.connectionpool")  # its debug lines quote the path and query (?token=)
        self.format = cfg.format
        self.timeout = cfg.timeout_seconds
        self.session = requests.Session()
        self.session.headers.update(auth_headers(conn))
        self.session.headers["Content-Type"] = CONTENT_TYPES[cfg.format]
        self.session.headers["User-Agent"] = "scoring-pipeline/push"

    @property
    def target(self) -> str:
        return f"webhook:{self.shown}"

    def send(self, batch: Batch) -> None:
        try:
            resp = self.session.post(self.url, data=batch.body(self.format), headers=batch.headers(),
                                     timeout=self.timeout, allow_redirects=False)
        # requests' own exceptions quote the full URL (credentials too): not chained, their reason is in the message
        except requests.Timeout as exc:
            raise DeliveryFailed(f"POST {self.shown} timed out after {self.timeout:g}s: {root_cause(exc)}",
                                 retryable=True) from None
        except requests.ConnectionError as exc:
            raise DeliveryFailed(f"POST {self.shown}: connection failed: {root_cause(exc)}", retryable=True) from None
        except requests.RequestException as exc:  # a broken response (bad chunking, headers): try again
            raise DeliveryFailed(f"POST {self.shown}: {type(exc).__name__}: {root_cause(exc)}",
                                 retryable=True) from None
        if 200 <= resp.status_code < 300:
            return
        text = resp.text[:2000].strip()
        message = f"POST {self.shown} answered HTTP {resp.status_code} {resp.reason}: {text or '(empty body)'}"
        if resp.status_code == 429 or resp.status_code >= 500:
            raise DeliveryFailed(message, retryable=True,
                                 retry_after=retry_after_seconds(resp.headers.get("Retry-After")))
        raise DeliveryFailed(message, retryable=False)

    def close(self) -> None:
        self.session.close()

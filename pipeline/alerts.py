"""Alerts: an ERROR log line of record and, if the job names one, a POST to a webhook connection.

Drift (``pipeline.drift``) and realised performance (``pipeline.outcomes``) alert through here. A
failing webhook is logged (redacted: requests quotes the URL), never raised: an alert must not
fail what published correctly.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import requests

from pipeline.connections import auth_headers, base_url, get
from pipeline.redact import redact

log = logging.getLogger(__name__)


def send(text: str, connection: str | None, body: dict[str, Any], idempotency_key: str, resolver: Any = None,
         logger: logging.Logger | None = None) -> None:
    """Log ``text`` at ERROR; POST ``body`` (with the text) to the webhook ``connection`` if there is one."""
    out = logger or log
    out.error(text)
    if not connection:
        return
    try:
        conn = get(connection, resolver)
        resp = requests.post(base_url(conn), data=json.dumps({"text": text, **body}, default=str), timeout=10,
                             headers={**auth_headers(conn), "Content-Type": "application/json",
                                      "Idempotency-Key": idempotency_key})
        resp.raise_for_status()
        out.info("alert posted to connection %s (HTTP %d)", connection, resp.status_code)
    except Exception as exc:  # noqa: BLE001 - the ERROR log above is the alert of record
        out.error("could not post the alert to connection %s: %s", connection, redact(str(exc)))

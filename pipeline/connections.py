"""Credentials of sinks and databases: Airflow connections, never the job file.

A connection is looked up as ``AIRFLOW_CONN_<ID>`` first (an Airflow connection URI or its
JSON form, as Airflow itself reads them), then through a resolver the caller passes in;
the DAG passes one that asks Airflow (secrets backend, metadata DB), so the package itself
never imports Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Conn:
    """The fields of an Airflow connection."""

    conn_id: str
    conn_type: str = ""
    host: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    schema: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def redacted(self) -> str:
        """Where the connection points, without credentials."""
        port = f":{self.port}" if self.port else ""
        return f"{self.conn_type}://{self.host or ''}{port}"


Resolver = Callable[[str], Conn]


def from_uri(conn_id: str, uri: str) -> Conn:
    """Parse an Airflow connection URI (``type://login:password@host:port/schema?extra``) or JSON."""
    uri = uri.strip()
    if uri.startswith("{"):
        doc = json.loads(uri)
        extra = doc.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return Conn(conn_id, doc.get("conn_type", ""), doc.get("host"), doc.get("login"), doc.get("password"),
                    int(doc["port"]) if doc.get("port") else None, doc.get("schema"), extra)
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = json.loads(query.pop("__extra__")) if "__extra__" in query else query
    return Conn(
        conn_id,
        parts.scheme.replace("-", "_"),
        unquote(parts.hostname) if parts.hostname else None,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        parts.port,
        unquote(parts.path[1:]) if parts.path else None,
        extra,
    )


def env_var(conn_id: str) -> str:
    """The environment variable Airflow reads a connection from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def get(conn_id: str, resolver: Resolver | None = None) -> Conn:
    """The connection ``conn_id``: ``AIRFLOW_CONN_<ID>`` first, else ``resolver``, else ConfigError."""
    env = os.environ.get(env_var(conn_id))
    if env:
        try:
            return from_uri(conn_id, env)
        except (ValueError, json.JSONDecodeError):  # the message may quote the password: not shown
            raise ConfigError(
                f"AIRFLOW_CONN_{conn_id.upper()} is not a valid connection URI or JSON (special characters in the "
                "login or password, such as / # @ :, must be URL-encoded, e.g. with urllib.parse.quote)"
            ) from None
    if resolver is not None:
        return resolver(conn_id)
    raise ConfigError(
        f"no connection {conn_id!r}: create it in Airflow (Admin > Connections) or set "
        f"AIRFLOW_CONN_{conn_id.upper()} (a URI such as http://:TOKEN@host:port)"
    )

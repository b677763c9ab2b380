"""Credentials of sinks and databases: Airflow connections, never the job file.

A connection is looked up as ``AIRFLOW_CONN_<ID>`` first (an Airflow connection URI or its
JSON form, as Airflow itself reads them), then through a resolver the caller passes in;
the DAG passes one that asks Airflow (secrets backend, metadata DB), so the package itself
never imports Airflow.
"""

from __future__ import annotations

import base64
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
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold tokens or auth headers

    def redacted(self) -> str:
        """Where the connection points, without credentials."""
        port = f":{self.port}" if self.port else ""
        return f"{self.conn_type}://{self.host or ''}{port}"


Resolver = Callable[[str], Conn]


def from_airflow(conn_id: str, c: Any) -> Conn:
    """An Airflow connection object (``BaseHook.get_connection``) as a ``Conn``."""
    return Conn(conn_id, c.conn_type or "", c.host, c.login, c.password, c.port, c.schema, c.extra_dejson or {})


ENCODE_HINT = ("special characters in the login or password, such as / # ? @ :, must be URL-encoded, e.g. with "
               "urllib.parse.quote")


def from_uri(conn_id: str, uri: str) -> Conn:
    """Parse an Airflow connection URI (``type://login:password@host:port/schema?extra``) or JSON.

    A malformed one raises ConfigError naming the connection and what is wrong, never quoting
    the password.
    """
    uri = uri.strip()
    if uri.startswith("{"):
        return _from_json(conn_id, uri)
    return _from_url(conn_id, uri)


def _malformed(conn_id: str, what: str) -> ConfigError:
    return ConfigError(f"connection {conn_id!r} is not a valid connection URI or JSON: {what}")


def _json_doc(conn_id: str, text: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:  # its message gives the position only, never the text
        raise _malformed(conn_id, f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                                  f"{exc.colno})") from None
    if not isinstance(doc, dict):
        raise _malformed(conn_id, f"{where} must be a JSON object, not {type(doc).__name__}")
    return doc


def _from_json(conn_id: str, text: str) -> Conn:
    doc = _json_doc(conn_id, text, "the JSON form")
    extra = doc.get("extra") or {}
    if isinstance(extra, str):
        extra = _json_doc(conn_id, extra, "its 'extra'")
    if not isinstance(extra, dict):
        raise _malformed(conn_id, "its 'extra' must be a JSON object")
    port = doc.get("port")
    if port not in (None, ""):
        if isinstance(port, bool) or not str(port).strip().isdigit() or not 0 <= int(port) <= 65535:
            raise _malformed(conn_id, f"its port {str(port)[:20]!r} is not a number from 0 to 65535")
        port = int(port)
    return Conn(conn_id, doc.get("conn_type") or "", doc.get("host"), doc.get("login"), doc.get("password"),
                port or None, doc.get("schema"), extra)


def _port(conn_id: str, uri: str, netloc: str) -> int | None:
    """The URI's port, or ConfigError saying what is wrong (quoting it only where it cannot be the password)."""
    host = netloc.rpartition("@")[2]
    text = host.rpartition("]")[2] if host.startswith("[") else host
    text = text.partition(":")[2] if ":" in text else ""
    if not text:
        return None
    if text.isdigit() and int(text) <= 65535:
        return int(text)
    if "@" in uri and "@" not in netloc:  # the "port" is a piece of a password cut at an unencoded / # ?
        raise _malformed(conn_id, f"the part after the host is not a port; {ENCODE_HINT}")
    problem = "is out of range (0 to 65535)" if text.isdigit() else "is not a number"
    # quoted only after an '@' (then it is surely not the password: a bare http://user:secret would be)
    shown = f" {text[:20]!r}" if "@" in netloc or text.isdigit() else ""
    raise _malformed(conn_id, f"the port{shown} after the host {problem} (write host:port, e.g. host:8080)")


def _from_url(conn_id: str, uri: str) -> Conn:
    if "://" not in uri or not uri.split("://", 1)[0]:
        raise _malformed(conn_id, "it has no type: write it as type://login:password@host:port/schema, e.g. "
                                  "http://:TOKEN@host:8080 or postgresql://user@host:5432/db")
    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. "Invalid IPv6 URL": says what, not the text
        raise _malformed(conn_id, f"{exc} ({ENCODE_HINT})") from None
    port = _port(conn_id, uri, parts.netloc)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = _json_doc(conn_id, query.pop("__extra__"), "its __extra__") if "__extra__" in query \
        else query
    return Conn(
        conn_id,
        parts.scheme.replace("-", "_"),
        unquote(hostname) if hostname else None,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        port,
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
        except ConfigError as exc:
            raise ConfigError(f"{env_var(conn_id)}: {exc}") from None
        except (ValueError, TypeError):  # anything else: its message may quote the password, so not shown
            raise ConfigError(f"{env_var(conn_id)} is not a valid connection URI or JSON ({ENCODE_HINT})") from None
    if resolver is not None:
        return resolver(conn_id)
    raise ConfigError(
        f"no connection {conn_id!r}: create it in Airflow (Admin > Connections) or set "
        f"AIRFLOW_CONN_{conn_id.upper()} (a URI such as http://:TOKEN@host:port)"
    )


def base_url(conn: Conn) -> str:
    """``scheme://host:port`` of an HTTP connection (Airflow's HttpHook conventions)."""
    if not conn.host:
        raise ConfigError(f"connection {conn.conn_id!r} has no host: set it to the receiver's address")
    if "://" in conn.host:
        base = conn.host
    else:
        if conn.schema in ("http", "https"):
            scheme = conn.schema
        else:
            scheme = "https" if conn.conn_type == "https" else "http"
        base = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
        if conn.schema and conn.schema not in ("http", "https"):
            base += "/" + conn.schema.strip("/")
    return base.rstrip("/")


def auth_headers(conn: Conn) -> dict[str, str]:
    """Authorization from the connection: login + password = Basic, password alone = Bearer."""
    headers = {str(k): str(v) for k, v in (conn.extra.get("headers") or {}).items()}
    if conn.password and conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode()
        headers.setdefault("Authorization", f"Basic {token}")
    elif conn.password:
        headers.setdefault("Authorization", f"Bearer {conn.password}")
    return headers

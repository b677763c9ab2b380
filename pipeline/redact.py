"""Secrets out of every text the pipeline prints or stores: log lines, errors, tables, files, reports.

``redact`` finds URLs and credential-looking fragments inside arbitrary text (an exception
message, a log line, a sink's description) and replaces the secret parts with ``***``:

- the user info of any ``scheme://user:password@host`` URL (``amqp://``, ``redis://``,
  ``postgresql://``, ``http(s)://`` ...), also when the password holds unencoded ``/ ? #``;
- the value of secret query parameters (``?token=``, ``&X-Amz-Signature=`` ...), also in a
  URL without its scheme (``/hook?token=...`` as urllib3 quotes it);
- ``password=...`` / ``"token": "..."`` pairs and ``Authorization`` / ``Bearer`` values.

Everything else stays byte for byte as it was. Standard library only, so any module (and a
logging filter) can use it.
"""

from __future__ import annotations

import logging
import re
from typing import overload
from urllib.parse import unquote

MASK = "***"

# Parameter names whose value is a secret wherever they appear (query, key=value, JSON).
SECRET_NAMES = frozenset({
    "password", "passwd", "pwd", "secret", "token", "access_token", "refresh_token", "id_token", "auth_token",
    "api_key", "apikey", "api-key", "x-api-key", "client_secret", "private_token", "session_token",
    "security_token", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-goog-signature", "x-goog-credential", "jwt", "bearer", "credential", "credentials", "passphrase",
})
# Names that are secrets in a URL's query (``?key=``, Azure SAS ``&sig=``) but too common in prose.
QUERY_ONLY_NAMES = frozenset({"key", "sig", "pass", "auth", "code", "access_key", "secret_key", "sas"})
SECRET_SUFFIXES = ("_token", "-token", "_secret", "-secret", "_password", "-password", "_passwd", "_apikey",
                   "_api_key", "-api-key", "_signature", "-signature", "_credential", "-credential",
                   "_access_key", "_secret_key", "_private_key")

_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*://"
# user info without / ? # (well-formed, possibly with an unencoded '@'): up to the last '@' of the authority
_USERINFO = re.compile(rf"({_SCHEME})[^\s/?#'\"<>\[\]]*@(?=[^\s/?#'\"<>@]*(?:[/?#'\"<>\s]|$))")
# user:password where the password holds an unencoded / ? # (never a host:port followed by a path)
_LOOSE_USERINFO = re.compile(rf"({_SCHEME})[^\s:/?#@'\"<>\[\]]*:(?!\d+(?:[/?#\s'\"<>]|$))[^\s@'\"<>]*@")
_QUERY_PARAM = re.compile(r"([?&;])([^=&#\s?;'\"<>]+)=([^&#\s;'\"<>]*)")
_KEY_VALUE = re.compile(r"(?<![\w?&;.\-])([A-Za-z][\w\-]*)=([^\s&,;)'\"<>]+)")
_QUOTED_PAIR = re.compile(r"""(["'])([A-Za-z][\w\-]*)\1(\s*:\s*)(["'])((?:\\.|(?!\4).)*)\4""")
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)(?:(basic|bearer|token|digest)\s+)?"
                          r"[^\s\"',;]+")
# "Bearer <token>" outside a header: a token has a digit or . _ ~ + / = in it ("bearer token" is prose)
_BEARER = re.compile(r"(?i)\b(bearer\s+)(?=[A-Za-z\-]*[0-9._~+/=])[A-Za-z0-9._~+/=\-]{6,}")


def is_secret_name(name: str, *, in_query: bool = False) -> bool:
    """Whether a parameter named ``name`` (case-insensitive, URL-decoded) holds a secret."""
    low = unquote(name).strip().lower()
    if low in SECRET_NAMES or low.endswith(SECRET_SUFFIXES):
        return True
    return in_query and low in QUERY_ONLY_NAMES


def _tail(value: str) -> str:
    """Punctuation that ends the sentence around a value (``...?token=t: refused``), kept."""
    return value[len(value.rstrip(":.,)]}")):]


def _query(m: re.Match[str]) -> str:
    sep, name, value = m.groups()
    if not value or not is_secret_name(name, in_query=True):
        return m.group(0)
    return f"{sep}{name}={MASK}{_tail(value)}"


def _key_value(m: re.Match[str]) -> str:
    name, value = m.groups()
    return f"{name}={MASK}{_tail(value)}" if is_secret_name(name) else m.group(0)


def _quoted(m: re.Match[str]) -> str:
    q, name, colon, vq, value = m.groups()
    return f"{q}{name}{q}{colon}{vq}{MASK}{vq}" if value and is_secret_name(name) else m.group(0)


def _auth(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{MASK}"


@overload
def redact(text: str) -> str: ...


@overload
def redact(text: None) -> None: ...


def redact(text: str | None) -> str | None:
    """``text`` with every credential in it (URL user info, secret parameters, auth headers) as ``***``."""
    if text is None:
        return None
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    text = _LOOSE_USERINFO.sub(rf"\1{MASK}@", text)
    text = _QUERY_PARAM.sub(_query, text)
    text = _KEY_VALUE.sub(_key_value, text)
    text = _QUOTED_PAIR.sub(_quoted, text)
    text = _AUTH_HEADER.sub(_auth, text)
    return _BEARER.sub(rf"\1{MASK}", text)


def redact_url(url: str) -> str:
    """One URL without credentials: ``https://u:p@h/x?token=t&a=1`` -> ``https://***@h/x?token=***&a=1``."""
    return redact(url)


class RedactFilter(logging.Filter):
    """A logging filter that redacts a record's message, its arguments and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging's own error report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | str) -> logging.Logger:
    """Add one :class:`RedactFilter` to ``logger`` (once; a second call changes nothing)."""
    target = logging.getLogger(logger) if isinstance(logger, str) else logger
    if not any(isinstance(f, RedactFilter) for f in target.filters):
        target.addFilter(RedactFilter())
    return target

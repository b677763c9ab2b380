"""Text that PostgreSQL accepts, with nothing lost: quarantined values and ledger error texts.

PostgreSQL's ``text`` and ``jsonb`` refuse two things a file can hold: the NUL character
(U+0000) and a lone UTF-16 surrogate (U+D800..U+DFFF, which is how Python keeps the bytes of
text that was not valid UTF-8 when it is decoded with ``errors="surrogateescape"``: byte 0xNN
becomes U+DCNN). This module (standard library only, imported by the lowest layers) turns
such values into ones the database takes:

- ``storable(obj)``: a JSON-able structure (dicts, lists, strings, numbers, ...) with every
  string that holds a NUL or a lone surrogate replaced by the marker object
  ``{"$text_escaped": "<the text, backslash-escaped>"}``. ``restore(storable(obj)) == obj``,
  exactly (the original bytes come back with ``restore(...).encode("utf-8", "surrogateescape")``).
- ``safe_text(s)``: a text for humans (a ledger error, a log line): NUL shown as ``\\x00``, a
  lone surrogate as ``\\udcNN``; never raw. Not meant to be reversed.

The escape of a marker's text: ``\\`` stands for one backslash, ``\\x00`` for NUL,
``\\uXXXX`` (4 lower-case hex digits) for the surrogate U+XXXX; every other character is itself.
The marker is unambiguous: a dict whose only key is ``$text_escaped``, ``$number`` or
``$keys_escaped`` in the original data is itself wrapped (``{"$keys_escaped": {...}}``), so
every such one-key object in stored data is a marker. Dict keys holding a NUL or a surrogate
are escaped the same way inside ``$keys_escaped``. Floats JSON has no text for (NaN, +-inf:
jsonb refuses them) become ``{"$number": "NaN" | "Infinity" | "-Infinity"}``.
"""

from __future__ import annotations

import math
import re
from typing import Any

TEXT = "$text_escaped"
KEYS = "$keys_escaped"
NUMBER = "$number"
MARKERS = frozenset({TEXT, KEYS, NUMBER})

UNSAFE = re.compile("[\x00\ud800-\udfff]")
_ESCAPE_IN_MARKER = re.compile("[\\\\\x00\ud800-\udfff]")
_UNESCAPE = re.compile(r"\\(\\|x00|u[0-9a-f]{4})")
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def needs_escape(text: str) -> bool:
    """The text holds a character PostgreSQL's text or jsonb refuses (NUL, a lone surrogate)."""
    return UNSAFE.search(text) is not None


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    if char == "\x00":
        return "\\x00"
    return f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """The marker's text: backslash doubled, NUL as ``\\x00``, a lone surrogate as ``\\uXXXX``."""
    return _ESCAPE_IN_MARKER.sub(_escape_char, text)


def _unescape_char(match: re.Match[str]) -> str:
    body = match.group(1)
    if body == "\\":
        return "\\"
    if body == "x00":
        return "\x00"
    return chr(int(body[1:], 16))


def unescape(text: str) -> str:
    """The inverse of ``escape``."""
    return _UNESCAPE.sub(_unescape_char, text)


def storable(obj: Any) -> Any:
    """``obj`` with every string PostgreSQL refuses replaced by a marker (see the module's doc); other values
    as they are (dates and the like stay for the caller's JSON encoder). A structure that needs nothing
    escaped comes back equal to itself."""
    if isinstance(obj, str):
        return {TEXT: escape(obj)} if UNSAFE.search(obj) else obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {NUMBER: "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")}
    if isinstance(obj, dict):
        values = {key: storable(value) for key, value in obj.items()}
        if any(isinstance(key, str) and UNSAFE.search(key) for key in obj) or (len(obj) == 1 and set(obj) <= MARKERS):
            return {KEYS: {escape(key) if isinstance(key, str) else key: value for key, value in values.items()}}
        return values
    if isinstance(obj, list | tuple):
        return [storable(value) for value in obj]
    return obj


def restore(obj: Any) -> Any:
    """The original of ``storable``'s result (also of that result after a JSON round trip)."""
    if isinstance(obj, dict):
        if len(obj) == 1:
            (key, value), = obj.items()
            if key == TEXT and isinstance(value, str):
                return unescape(value)
            if key == NUMBER and value in _NON_FINITE:
                return _NON_FINITE[value]
            if key == KEYS and isinstance(value, dict):
                return {unescape(k) if isinstance(k, str) else k: restore(v) for k, v in value.items()}
        return {key: restore(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [restore(value) for value in obj]
    return obj


def escaped_paths(obj: Any) -> list[str]:
    """The top-level keys of a dict whose values ``storable`` would escape (e.g. the columns of a quarantined
    row that hold a NUL or a lone surrogate), in the dict's order."""
    if not isinstance(obj, dict):
        return []
    return [str(key) for key, value in obj.items() if storable(value) != value or _has_unsafe_key(value)]


def _has_unsafe_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(isinstance(k, str) and UNSAFE.search(k) for k in value) or any(map(_has_unsafe_key, value.values()))
    if isinstance(value, list | tuple):
        return any(map(_has_unsafe_key, value))
    return False


def _show(match: re.Match[str]) -> str:
    char = match.group()
    return "\\x00" if char == "\x00" else f"\\u{ord(char):04x}"


def safe_text(text: Any) -> Any:
    """A human-readable text PostgreSQL accepts: NUL shown as ``\\x00``, a lone surrogate as ``\\udcNN``
    (the byte 0xNN that was not UTF-8); anything else unchanged. None and non-texts pass through."""
    if not isinstance(text, str):
        return text
    return UNSAFE.sub(_show, text) if UNSAFE.search(text) else text

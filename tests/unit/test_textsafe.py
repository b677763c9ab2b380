"""pipeline.textsafe: values PostgreSQL's text and jsonb accept, restored exactly."""

from __future__ import annotations

import json
import math

import pytest

from pipeline import textsafe
from pipeline.textsafe import restore, safe_text, storable

BAD_BYTES = b"caf\xe9 \xff\xfe end".decode("utf-8", "surrogateescape")  # latin-1 é and a BOM-ish pair


def _round_trip(obj):
    """As the quarantine keeps it: storable -> JSON text (what jsonb gets) -> parsed -> restore."""
    text = json.dumps(storable(obj), ensure_ascii=False)
    assert not textsafe.needs_escape(text)
    text.encode("utf-8")  # no lone surrogate
    return restore(json.loads(text))


@pytest.mark.parametrize("value", [
    "plain", "", "back\\slash", "a\x00b", "\x00", "\x00\x00\\x00", "\\x00", "\\\\x00", "\\u00e9",
    BAD_BYTES, "\udc80", "\ud800", "\udfff", "x\ud83dy", "é ✓ 😀", "\\" + BAD_BYTES + "\x00\\",
])
def test_strings_restore_exactly(value):
    stored = storable(value)
    assert not textsafe.needs_escape(json.dumps(stored, ensure_ascii=False))
    assert "\\u0000" not in json.dumps(stored)
    assert _round_trip(value) == value
    assert restore(stored) == value


def test_clean_structures_are_unchanged():
    row = {"id": "00123", "amount": 1.5, "n": 3, "flag": True, "none": None, "list": ["a", 1], "nested": {"a": "b"}}
    assert storable(row) == row
    assert restore(row) == row


def test_marker_is_visible_and_unambiguous():
    assert storable("a\x00b") == {"$text_escaped": "a\\x00b"}
    assert storable(BAD_BYTES.split(" ")[0]) == {"$text_escaped": "caf\\udce9"}
    # the original data may itself hold a dict that looks like a marker: it is wrapped, and comes back as a dict
    for lookalike in ({"$text_escaped": "a\\x00b"}, {"$keys_escaped": {}}, {"$number": "NaN"},
                      {"$keys_escaped": {"$text_escaped": "x"}}):
        assert restore(json.loads(json.dumps(storable(lookalike)))) == lookalike
    # a marker-named key beside others is no marker
    both = {"$text_escaped": "x", "other": 1}
    assert storable(both) == both and restore(both) == both


def test_keys_with_nul_or_surrogates():
    row = {"col\x00umn": "v", "ok": "a\x00", "caf\udce9": 1}
    stored = json.loads(json.dumps(storable(row)))
    assert "\\u0000" not in json.dumps(stored)
    assert restore(stored) == row


def test_original_bytes_come_back():
    raw = b"Jos\xe9\x00 M\xfcller \xc3\xa9"
    value = raw.decode("utf-8", "surrogateescape")
    assert _round_trip({"name": value})["name"].encode("utf-8", "surrogateescape") == raw


def test_non_finite_floats():
    row = {"a": math.nan, "b": math.inf, "c": -math.inf, "d": 1.0}
    text = json.dumps(storable(row), allow_nan=False)  # jsonb refuses NaN / Infinity tokens
    back = restore(json.loads(text))
    assert math.isnan(back["a"]) and back["b"] == math.inf and back["c"] == -math.inf and back["d"] == 1.0


def test_escaped_paths_names_the_columns():
    assert textsafe.escaped_paths({"id": "1", "name": "a\x00", "city": BAD_BYTES, "n": 2}) == ["name", "city"]
    assert textsafe.escaped_paths({"id": "1"}) == []


def test_safe_text_shows_the_bytes():
    assert safe_text("bad \x00 byte") == "bad \\x00 byte"
    assert safe_text("caf\udce9") == "caf\\udce9"
    assert safe_text("clean ✓") == "clean ✓"
    assert safe_text(None) is None
    safe_text("x\x00\ud800").encode("utf-8")  # encodes: PostgreSQL's text takes it

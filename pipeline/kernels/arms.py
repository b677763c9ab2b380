"""A/B arms on rows in memory: which arm an entity is in, by a stable hash of its key and a salt.

An entity's bucket is the first 8 bytes of ``BLAKE2b(salt, 0x1F, key as text)`` (big-endian) modulo
``BUCKETS`` (10,000: one bucket is 0.01%). Arms take consecutive ranges of buckets in the split's order
(``model.split``: the first arm buckets ``0 .. b1-1``, the next ``b1 .. b1+b2-1``, ...); the champion keeps
the rest. So:

- an entity gets the same arm in every run, in every process, on every machine and Python version, in the
  nightly run and in the online door (nothing here depends on batching, order or a seed);
- growing an arm's share only moves entities from the champion into the arm (10% -> 20%: the first 10%
  stay where they were); a new salt reshuffles everyone.

A key's text is its decimal digits for an integer key and the text itself for a text key (``00123`` and
``123`` are two entities, as everywhere else). A missing key has no arm (``None``): such a row is quarantined
before it is scored.

The contract guard (``contract_differences``) says how two versions' cards differ in what a split needs to
be the same: the inputs (name, type, nullability) and the outputs (task, classes, positive class).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

BUCKETS = 10_000
CHAMPION = "champion"  # the arm of every row no other arm takes
SEPARATOR = b"\x1f"


def key_text(value: Any) -> str | None:
    """A key as the assignment hashes it: an integer's decimal digits, a text as it is; ``None`` when missing."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"an entity key cannot be a boolean ({value!r})")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            return None
        if float(value).is_integer():  # an integer key read through a float column (pandas with NA)
            return str(int(value))
        raise TypeError(f"an entity key must be an integer or a text, not {value!r}")
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def bucket(key: Any, salt: str) -> int | None:
    """One key's bucket in ``0 .. BUCKETS-1`` (``None`` for a missing key)."""
    text = key_text(key)
    if text is None:
        return None
    digest = hashlib.blake2b(salt.encode("utf-8") + SEPARATOR + text.encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def buckets(keys: Iterable[Any], salt: str) -> np.ndarray:
    """The buckets of many keys (a pyarrow array, a list, a numpy array), ``-1`` for a missing key."""
    values = keys.to_pylist() if hasattr(keys, "to_pylist") else list(keys)
    prefix = salt.encode("utf-8") + SEPARATOR
    out = np.empty(len(values), dtype=np.int64)
    blake = hashlib.blake2b
    for i, value in enumerate(values):
        text = key_text(value)
        if text is None:
            out[i] = -1
            continue
        digest = blake(prefix + text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") % BUCKETS
    return out


def ranges(split: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """The arms' bucket ranges ``(arm, first, end)`` (end excluded), in the split's order."""
    out, first = [], 0
    for arm, basis_points in split:
        if arm == CHAMPION:
            raise ValueError("the champion's arm is the rest of the buckets; it is not listed in a split")
        out.append((arm, first, first + int(basis_points)))
        first += int(basis_points)
    if first >= BUCKETS:
        raise ValueError(f"the split's arms take {first} of {BUCKETS} buckets: the champion must keep some")
    return out


def assign(keys: Iterable[Any], salt: str, split: Sequence[tuple[str, int]]) -> np.ndarray:
    """Each key's arm (object array of arm names; ``None`` for a missing key). ``split``: ``[(arm, basis
    points), ...]`` as ``ModelRef.split_basis_points`` gives it; an empty split puts every key in the champion's
    arm."""
    b = buckets(keys, salt)
    out = np.full(len(b), CHAMPION, dtype=object)
    for arm, first, end in ranges(split):
        out[(b >= first) & (b < end)] = arm
    out[b < 0] = None
    return out


def arm_of(key: Any, salt: str, split: Sequence[tuple[str, int]]) -> str | None:
    """One key's arm."""
    b = bucket(key, salt)
    if b is None:
        return None
    for arm, first, end in ranges(split):
        if first <= b < end:
            return arm
    return CHAMPION


# -- the contract guard ----------------------------------------------------------------------------------
def _inputs(card: dict[str, Any]) -> dict[str, tuple[Any, bool]]:
    return {c["name"]: (c.get("type"), bool(c.get("nullable", True))) for c in card.get("inputs") or []}


def contract_differences(champion: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """How ``other``'s card differs from the champion's in the contract an A/B split needs the same (inputs:
    name, type, nullability; outputs: task, classes, positive class); empty when they agree. Ranges and
    categories may differ (a retrained version learns new ones): the rows are checked once, against the
    champion's contract, and every arm scores the same valid rows."""
    found: list[str] = []
    mine, theirs = _inputs(champion), _inputs(other)
    for name in sorted(set(mine) - set(theirs)):
        found.append(f"input {name!r} is missing")
    for name in sorted(set(theirs) - set(mine)):
        found.append(f"input {name!r} is extra")
    for name in sorted(set(mine) & set(theirs)):
        (t1, n1), (t2, n2) = mine[name], theirs[name]
        if t1 != t2:
            found.append(f"input {name!r} is {t2} (champion: {t1})")
        if n1 != n2:
            found.append(f"input {name!r} is {'nullable' if n2 else 'not nullable'} (champion: "
                         f"{'nullable' if n1 else 'not nullable'})")
    for field in ("task", "classes", "positive_class"):
        a, b = champion.get(field), other.get(field)
        if field == "classes":
            a, b = [str(x) for x in a or []], [str(x) for x in b or []]
        if a != b:
            found.append(f"{field} is {b!r} (champion: {a!r})")
    return found

"""Named, versioned feature transformations, decoupled from the model (the registry ``pipeline.preprocess``
exposes to users: ``pipeline.preprocess.register``).

A transformation turns the raw input contract into the model's feature frame. It takes the
rows, or the rows and the model card's input contract (for example to encode categories in
the order the model was trained with). Its name,
version and a fingerprint of its code are written into the model card at training time;
scoring looks the same transformation up and refuses to run if its code has changed
since the model was trained (a new behaviour needs a new version). Learned steps
(imputation, encoders) belong inside the model's scikit-learn Pipeline, so they are pickled
with it; a transformation holds only fixed rules.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from pipeline.card import MODULE_RE
from pipeline.errors import ModelIntegrityError

Transform = Callable[[pd.DataFrame], pd.DataFrame]
ENTRY_POINTS = "scoring_pipeline.transforms"
log = logging.getLogger("pipeline.preprocess")  # the name its warnings always had
_TRANSFORMS: dict[tuple[str, int], Callable[..., pd.DataFrame]] = {}


def register(name: str, version: int) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Decorator: make a transformation ``fn(rows)`` or ``fn(rows, contract)`` available as ``name@version``."""

    def wrap(fn: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        _TRANSFORMS[(name, version)] = fn
        return fn

    return wrap


def fingerprint(fn: Callable[..., pd.DataFrame]) -> str:
    """sha256 of a transformation's source code."""
    return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()


def spec(name: str, version: int, module: str | None = None) -> dict[str, Any]:
    """The card entry of a transformation: name, version, code fingerprint and the module that registers it."""
    fn = get(name, version, module)
    entry = {"name": name, "version": version, "fingerprint": fingerprint(fn)}
    if fn.__module__ != __name__:  # found again at scoring by importing it
        entry["module"] = fn.__module__
    return entry


def get(name: str, version: int, module: str | None = None) -> Callable[..., pd.DataFrame]:
    """A registered transformation.

    When ``name@version`` is not registered yet, ``module`` (the card's ``preprocess.module``) is
    imported, then the modules named by ``scoring_pipeline.transforms`` entry points: importing
    a module registers its transforms.
    """
    if (name, version) not in _TRANSFORMS and module:
        _import(module, f"{name}@{version}")
    if (name, version) not in _TRANSFORMS:
        load_plugins()
    try:
        return _TRANSFORMS[(name, version)]
    except KeyError:
        known = ", ".join(f"{n}@{v}" for n, v in sorted(_TRANSFORMS)) or "none"
        where = f" (module {module} registers no such transform)" if module else ""
        raise ModelIntegrityError(
            f"preprocessing {name}@{version} is not registered{where} (known: {known}). Install the package that "
            f"registers it (entry point group {ENTRY_POINTS!r}, or the card's preprocess.module), or register it "
            "with pipeline.preprocess.register."
        ) from None


def _import(module: str, wanted: str) -> None:
    """Import the module a card names for its transform (a dotted module path, never a file)."""
    if not MODULE_RE.match(module):
        raise ModelIntegrityError(f"preprocess.module {module!r} is not a module path such as 'acme.features'")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ModelIntegrityError(
            f"preprocessing {wanted}: cannot import module {module!r} ({exc}). Install it where the pipeline "
            "runs (every Airflow worker), or put it on PYTHONPATH."
        ) from None


@functools.cache
def load_plugins() -> list[str]:
    """Import every module named in the ``scoring_pipeline.transforms`` entry point group, once."""
    loaded = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINTS):
        try:
            entry.load()
            loaded.append(entry.value)
        except Exception as exc:  # noqa: BLE001 - one broken plug-in must not hide the others
            log.warning("transform entry point %s (%s) failed to load: %s: %s", entry.name, entry.value,
                        type(exc).__name__, exc)
    return loaded


def bind(fn: Callable[..., pd.DataFrame], contract: list[dict[str, Any]]) -> Transform:
    """A transformation as ``rows -> features``: one that takes the contract gets it bound."""
    if len(inspect.signature(fn).parameters) > 1:
        return functools.partial(fn, contract=contract)
    return fn


def for_card(card: dict[str, Any]) -> Transform:
    """The transformation a model card was trained with (bound to its contract); refuse if its code changed."""
    entry = card.get("preprocess") or {"name": "identity", "version": 1}
    fn = get(entry["name"], int(entry["version"]), entry.get("module"))
    expected = entry.get("fingerprint")
    if expected and expected != fingerprint(fn):
        raise ModelIntegrityError(
            f"preprocessing {entry['name']}@{entry['version']} has changed since model "
            f"{card.get('name')} v{card.get('version')} was trained (code fingerprint differs). "
            "Register the new code as a new version and retrain, or restore the old code."
        )
    return bind(fn, card.get("inputs") or [])


@register("identity", 1)
def identity(df: pd.DataFrame) -> pd.DataFrame:
    """No transformation."""
    return df


@register("categories", 1)
def categories(df: pd.DataFrame, contract: list[dict[str, Any]]) -> pd.DataFrame:
    """Category columns as pandas Categoricals with the contract's categories.

    For estimators trained on pandas ``category`` columns that read the dtype (HistGradientBoosting
    with ``categorical_features="from_dtype"``, LightGBM): scoring reads text, this gives them
    the dtype they were trained with.
    """
    out = df.copy()
    for column in contract:
        if column["type"] == "category" and column["name"] in out:
            out[column["name"]] = pd.Categorical(out[column["name"]], categories=column.get("categories") or None)
    return out

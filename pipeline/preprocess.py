"""Named, versioned feature transformations, decoupled from the model.

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
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.errors import ModelIntegrityError

Transform = Callable[[pd.DataFrame], pd.DataFrame]
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


def spec(name: str, version: int) -> dict[str, Any]:
    """The card entry of a transformation."""
    return {"name": name, "version": version, "fingerprint": fingerprint(get(name, version))}


def get(name: str, version: int) -> Callable[..., pd.DataFrame]:
    try:
        return _TRANSFORMS[(name, version)]
    except KeyError:
        known = ", ".join(f"{n}@{v}" for n, v in sorted(_TRANSFORMS)) or "none"
        raise ModelIntegrityError(
            f"preprocessing {name}@{version} is not registered in pipeline.preprocess (known: {known})"
        ) from None


def bind(fn: Callable[..., pd.DataFrame], contract: list[dict[str, Any]]) -> Transform:
    """A transformation as ``rows -> features``: one that takes the contract gets it bound."""
    if len(inspect.signature(fn).parameters) > 1:
        return functools.partial(fn, contract=contract)
    return fn


def for_card(card: dict[str, Any]) -> Transform:
    """The transformation a model card was trained with (bound to its contract); refuse if its code changed."""
    entry = card.get("preprocess") or {"name": "identity", "version": 1}
    fn = get(entry["name"], int(entry["version"]))
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


@register("churn_features", 1)
def churn_features_v1(df: pd.DataFrame) -> pd.DataFrame:
    """Churn features: the raw contract plus ratios that make tenure comparable."""
    out = df.copy()
    tenure = out["tenure_months"].clip(lower=1)
    out["charges_per_tenure_month"] = out["total_charges"] / tenure
    out["tickets_per_product"] = out["support_tickets_90d"] / out["num_products"].clip(lower=1)
    out["inactive_week"] = (out["days_since_last_login"] > 7).astype("float64")
    out.loc[out["days_since_last_login"].isna(), "inactive_week"] = np.nan
    return out


@register("churn_features", 2)
def churn_features_v2(df: pd.DataFrame, contract: list[dict[str, Any]]) -> pd.DataFrame:
    """Churn features v1, with each category replaced by its position in the contract's list.

    The model (gradient boosting with native categorical support) reads the codes directly,
    so scoring needs no one-hot encoding of strings. Missing and unknown categories are NaN,
    which the model treats as missing. (v1's ratios are repeated here, not called, so that
    this function's fingerprint covers all of its behaviour.)
    """
    out = df.copy()
    tenure = out["tenure_months"].clip(lower=1)
    out["charges_per_tenure_month"] = out["total_charges"] / tenure
    out["tickets_per_product"] = out["support_tickets_90d"] / out["num_products"].clip(lower=1)
    out["inactive_week"] = (out["days_since_last_login"] > 7).astype("float64")
    out.loc[out["days_since_last_login"].isna(), "inactive_week"] = np.nan
    for column in contract:
        if column["type"] != "category" or column["name"] not in out:
            continue
        values = pa.array(out[column["name"]], from_pandas=True)
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            values = values.cast(pa.string())
        codes = pc.index_in(values, value_set=pa.array(column.get("categories") or [], values.type))
        out[column["name"]] = codes.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out

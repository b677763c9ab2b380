"""The churn demo's feature transformations, registered as ``churn_features@1`` and ``@2``.

The core finds them through the ``scoring_pipeline.transforms`` entry point (pyproject.toml)
the first time a model card names them; it never imports this module itself. The function
bodies are byte-identical to the ones that lived in ``pipeline/preprocess.py`` before, so
models trained then keep their code fingerprint (``preprocess.fingerprint`` hashes each
function's own source, decorator included).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.preprocess import register


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

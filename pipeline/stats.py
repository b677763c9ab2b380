"""Training statistics for the model card: what drift (``pipeline.drift``) compares a partition against.

Numeric inputs (and the score) get moments, the share of missing values and decile bins
(edges and shares); categorical inputs get the share of each category and of missing
values. ``drift.compute`` counts a partition into the same bins.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

DRIFT_BINS = 10


def numeric_stats(values: pd.Series) -> dict[str, Any]:
    """Training statistics of a numeric input: moments, nulls and decile bins for PSI."""
    clean = pd.to_numeric(values, errors="coerce").dropna().astype("float64")
    edges = np.unique(np.quantile(clean, np.linspace(0, 1, DRIFT_BINS + 1))) if len(clean) else np.array([])
    counts = np.histogram(clean, bins=edges)[0] if len(edges) > 1 else np.array([len(clean)])
    return {
        "kind": "numeric",
        "mean": float(clean.mean()) if len(clean) else None,
        "std": float(clean.std()) if len(clean) else None,
        "min": float(clean.min()) if len(clean) else None,
        "max": float(clean.max()) if len(clean) else None,
        "null_share": float(values.isna().mean()),
        "bin_edges": [float(e) for e in edges],
        "bin_shares": [float(c) / max(len(clean), 1) for c in counts],
    }


def categorical_stats(values: pd.Series) -> dict[str, Any]:
    """Training statistics of a categorical input: category shares and nulls."""
    shares = values.dropna().astype(str).value_counts(normalize=True).sort_index()
    return {
        "kind": "categorical",
        "null_share": float(values.isna().mean()),
        "shares": {str(k): float(v) for k, v in shares.items()},
    }


def input_stats(frame: pd.DataFrame, inputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Statistics of every contract input (categories and booleans as categorical)."""
    out = {}
    for c in inputs:
        values = frame[c["name"]]
        if c["type"] in ("float", "int"):
            out[c["name"]] = numeric_stats(values)
        elif c["type"] == "bool":  # scoring counts Arrow's text of a boolean: 'true' / 'false'
            out[c["name"]] = categorical_stats(values.map({True: "true", False: "false"}))
        else:
            out[c["name"]] = categorical_stats(values)
    return out


def prediction_shares(predictions: np.ndarray) -> dict[str, float]:
    """Share of each predicted class (as text, the way predictions are stored)."""
    labels, counts = np.unique(np.asarray(predictions).astype(str), return_counts=True)
    return {str(k): float(v) / max(int(counts.sum()), 1) for k, v in zip(labels, counts, strict=True)}

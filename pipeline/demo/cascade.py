"""The cascade demo's models: a segment model routes customers to a churn model per segment.

- ``segments`` (the router): is the customer a *frequent* user (logged in within the last 5 days)
  or an *occasional* one? Learned from usage features (HistGradientBoosting), so a row's route is
  a prediction, with a score, as in the source material's example.
- ``churn_frequent`` and ``churn_occasional`` (the routes): churn models trained on each segment's
  own labelled history; ``churn_occasional`` also takes the router's ``router_score`` as an input.

All three are registered through ``pipeline.onboard.register_model`` (bring your own model), with
plain numeric contracts; ``dags/jobs/churn_cascade.yaml`` is the job (``make demo-cascade``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd

from pipeline import onboard
from pipeline.demo import data as demo_data
from pipeline.registry import ModelVersion, Registry

USAGE = ["days_since_last_login", "avg_session_minutes", "data_usage_gb", "tenure_months"]
CHURN_INPUTS = ["tenure_months", "monthly_charges", "num_products", "support_tickets_90d", "days_since_last_login",
                "avg_session_minutes", "late_payments_12m", "discount_pct", "data_usage_gb"]
SEGMENTS = ("frequent", "occasional")


def segment_of(frame: pd.DataFrame) -> np.ndarray:
    """The ground-truth segment the router learns."""
    return np.where(frame["days_since_last_login"].fillna(99) < 5, "frequent", "occasional")


def _open_ranges(columns: list[str]) -> dict[str, Any]:
    """No min/max from the training rows (a new day may go past them); nulls allowed where the data has them."""
    return {"inputs": {c: {"min": None, "max": None} for c in columns}}


def train_cascade(registry: Registry, *, end: dt.date, days: int = 3, n: int = 30_000,
                  seed: int = 7) -> dict[str, ModelVersion]:
    """Fit and register the router and the two segment models on labelled history before ``end``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    raw = demo_data.training_set(end, days=days, n=n, seed=seed)
    raw = raw[(raw["monthly_charges"] >= 0) & raw["region"].notna()].reset_index(drop=True)
    raw["segment"] = segment_of(raw)
    router = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(raw[USAGE], raw["segment"])
    out = {"segments": onboard.register_model(
        registry, "segments", router, raw[[demo_data.KEY, *USAGE, "segment"]], target="segment", key=demo_data.KEY,
        alias="champion", overrides=_open_ranges(USAGE), data="pipeline.demo.cascade (router)")}
    classes = list(router.classes_)
    raw["router_prediction"] = router.predict(raw[USAGE])
    raw["router_score"] = router.predict_proba(raw[USAGE])[:, classes.index("occasional")]
    for segment in SEGMENTS:
        rows = raw[raw["router_prediction"] == segment]
        inputs = CHURN_INPUTS + (["router_score"] if segment == "occasional" else [])
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.08, random_state=0)
        model.fit(rows[inputs], rows["churned"])
        out[f"churn_{segment}"] = onboard.register_model(
            registry, f"churn_{segment}", model, rows[[demo_data.KEY, *inputs, "churned"]], target="churned",
            key=demo_data.KEY, alias="champion", overrides={**_open_ranges(inputs), "positive_class": 1},
            data=f"pipeline.demo.cascade (segment {segment})")
    return out

"""Train the demo churn model and register it with a full model card.

The input contract (columns, types, nullability, ranges, categories) is declared here by
the person who trains the model; training statistics for drift checks are computed from
the training data. Both go into the model card that validation and drift read later.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import preprocess
from pipeline.demo import data as demo_data
from pipeline.demo import transforms  # noqa: F401 - registers churn_features@1 and @2
from pipeline.registry import ModelVersion, Registry
from pipeline.stats import categorical_stats, numeric_stats

log = logging.getLogger(__name__)

# The churn model's input contract: what every scored row must look like.
CHURN_CONTRACT: list[dict[str, Any]] = [
    {"name": "age", "type": "float", "nullable": True, "min": 18, "max": 110},
    {"name": "tenure_months", "type": "float", "nullable": False, "min": 0, "max": 600},
    {"name": "monthly_charges", "type": "float", "nullable": False, "min": 0, "max": 5000},
    {"name": "total_charges", "type": "float", "nullable": True, "min": 0, "max": 1_000_000},
    {"name": "num_products", "type": "float", "nullable": False, "min": 1, "max": 20},
    {"name": "support_tickets_90d", "type": "float", "nullable": False, "min": 0, "max": 500},
    {"name": "days_since_last_login", "type": "float", "nullable": True, "min": 0, "max": 3650},
    {"name": "avg_session_minutes", "type": "float", "nullable": True, "min": 0, "max": 1440},
    {"name": "late_payments_12m", "type": "float", "nullable": False, "min": 0, "max": 366},
    {"name": "discount_pct", "type": "float", "nullable": False, "min": 0, "max": 100},
    {"name": "data_usage_gb", "type": "float", "nullable": True, "min": 0, "max": 100_000},
    {"name": "contract_type", "type": "category", "nullable": False},
    {"name": "payment_method", "type": "category", "nullable": True},
    {"name": "region", "type": "category", "nullable": False},
    {"name": "plan", "type": "category", "nullable": False},
]


def build_estimator(categorical: list[str]) -> Any:
    """Gradient boosting with native categorical support: the categories arrive as integer codes
    (preprocessing ``churn_features@2``), missing values are handled by the trees themselves."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, max_leaf_nodes=31, random_state=0,
                                          categorical_features=categorical)


def train_churn(
    registry: Registry,
    *,
    end: dt.date,
    days: int = 3,
    n: int = 30_000,
    seed: int = 7,
    alias: str | None = "champion",
) -> ModelVersion:
    """Fit the churn model on labelled history before ``end`` and register it."""
    raw = demo_data.training_set(end, days=days, n=n, seed=seed)
    estimator, card, golden = fit(
        raw, f"pipeline.demo.data.training_set(end={end}, days={days}, n={n}, seed={seed})", seed,
        "Customer churn within 30 days (demo): HistGradientBoosting on usage and contract features.")
    mv = register(registry, estimator, card, golden, alias)
    log.info("registered churn v%s: %s", mv.version, card["metrics"])
    return mv


def fit(raw: pd.DataFrame, data: str, seed: int, description: str) -> tuple[Any, dict[str, Any], pd.DataFrame]:
    """The demo model's one recipe on labelled rows (the inputs and ``churned``): (estimator, card, golden rows).
    ``data`` says where the rows came from (the card's ``training.data``). Used by the first training and by the
    retraining on a breach (``pipeline.demo.retrain``), so both cards have the same shape."""
    from sklearn.model_selection import train_test_split

    # train on rows that satisfy the contract, as scoring will (validation quarantines the rest)
    raw = raw[(raw["monthly_charges"] >= 0) & raw["region"].notna()].reset_index(drop=True)
    inputs = [c["name"] for c in CHURN_CONTRACT]
    contract = contract_of(raw)
    transform = preprocess.spec("churn_features", 2)
    features = preprocess.bind(preprocess.get("churn_features", 2), contract)(raw[inputs])
    categorical = [c["name"] for c in CHURN_CONTRACT if c["type"] == "category"]
    numeric = [c for c in features.columns if c not in categorical]
    x_train, x_test, y_train, y_test, raw_train, raw_test = train_test_split(
        features, raw[demo_data.LABEL], raw[[demo_data.KEY, *inputs]], test_size=0.2, random_state=seed
    )
    estimator = build_estimator(categorical)
    estimator.fit(x_train, y_train)
    proba = estimator.predict_proba(x_test)[:, 1]
    card = {
        "description": description,
        "task": "binary_classification",
        "classes": [int(c) for c in estimator.classes_],
        "positive_class": 1,
        "entity_key": demo_data.KEY,
        "inputs": contract,
        "features": {"numeric": numeric, "categorical": categorical},
        "preprocess": transform,
        "output": {"prediction": "predicted class (1 = churns)", "score": "probability of the positive class"},
        "training": {
            "data": data,
            "rows": int(len(x_train)),
            "label": demo_data.LABEL,
            "stats": {c["name"]: (categorical_stats if c["type"] == "category" else numeric_stats)(
                raw_train[c["name"]]) for c in CHURN_CONTRACT},
            "score_stats": numeric_stats(pd.Series(proba)),
            "prediction_shares": {"0": float((proba < 0.5).mean()), "1": float((proba >= 0.5).mean())},
        },
        "metrics": holdout_metrics(y_test, proba),
        "library_versions": library_versions(),
        "sklearn_version": library_versions()["scikit-learn"],
    }
    golden = raw_test.head(200).copy()
    golden["expected_score"] = estimator.predict_proba(x_test.head(200))[:, 1]
    return estimator, card, golden


def library_versions() -> dict[str, str]:
    from sklearn import __version__ as sklearn_version

    return {"scikit-learn": sklearn_version, "pandas": pd.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def contract_of(raw: pd.DataFrame) -> list[dict[str, Any]]:
    """The churn contract with each category column's categories as seen in training."""
    contract = []
    for column in CHURN_CONTRACT:
        entry = dict(column)
        if column["type"] == "category":
            entry["categories"] = sorted(raw[column["name"]].dropna().astype(str).unique().tolist())
        contract.append(entry)
    return contract


def holdout_metrics(y_test: pd.Series, proba: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    return {
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 4),
        "accuracy": round(float(accuracy_score(y_test, proba >= 0.5)), 4),
        "log_loss": round(float(log_loss(y_test, proba)), 4),
        "positive_rate": round(float(y_test.mean()), 4),
        "holdout_rows": int(len(y_test)),
    }


def register(registry: Registry, estimator: Any, card: dict[str, Any], golden: pd.DataFrame,
             alias: str | None) -> ModelVersion:
    """Save the estimator and its golden rows, register them with the card."""
    import joblib

    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(tmp) / "model.joblib"
        joblib.dump(estimator, artifact)
        golden_path = Path(tmp) / "golden.parquet"
        golden.to_parquet(golden_path, index=False)
        return registry.register("churn", artifact, card, golden=golden_path, alias=alias)

"""Bring your own model: register a fitted estimator from its training frame in one call.

``register_model`` infers the whole model card, as MLflow infers a signature: the input
contract from the estimator's ``feature_names_in_`` and the frame's types (float, int,
category with its values, bool), the nullability and ranges seen, drift statistics, score
statistics, metrics when a target is given, golden rows with their expected scores and the
library versions; it checks the card against the estimator and registers the version. What
inference cannot know (a column that may be null in production, a wider range, the
positive class) comes as overrides. ``modelcheck.check_registration`` is the check every
registration goes through, hand-written cards included.

What the frame shows is recorded as observed, not enforced: its ranges as ``observed_min`` /
``observed_max`` (a row outside them is scored and flagged); category columns whose unknown
values the estimator scores itself (``unknown_category_handlers``) as ``handles_unknown``.
Only bounds given as overrides (``min``/``max``) quarantine. The key's dtype gives
``entity_key_type``; a default missing-value marker (``NA``, ``None``...) that is a real
category value of the frame gives that input's ``missing_values`` (the markers without it).
"""

from __future__ import annotations

import importlib
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import card as cards
from pipeline import stats
from pipeline.errors import ModelIntegrityError
from pipeline.kernels import transforms
from pipeline.kernels.columns import DEFAULT_NULL_VALUES
from pipeline.kernels.predict import Scorer
from pipeline.model import ModelVersion
from pipeline.modelcheck import (
    check_estimator,
    scores_unknown,
)
from pipeline.registry import Registry

GOLDEN_ROWS = 200
OVERRIDE_KEYS = {"description", "positive_class", "inputs"}
INPUT_OVERRIDES = {"type", "nullable", "min", "max", "observed_min", "observed_max", "categories", "handles_unknown",
                   "blank_is_missing", "missing_values"}


def register_model(registry: Registry, name: str, estimator: Any, frame: pd.DataFrame, *,
                   target: str | None = None, key: str | None = None, alias: str | None = None,
                   overrides: dict[str, Any] | None = None, preprocess_ref: str | None = None,
                   preprocess_module: str | None = None, data: str | None = None,
                   artifact: Path | None = None) -> ModelVersion:
    """Infer the card of a fitted ``estimator`` from its training ``frame`` and register a new version.

    Args:
        target: the label column (gives metrics; never an input).
        key: the entity key column (kept on the golden rows; never an input).
        overrides: ``{"positive_class": 1, "inputs": {"col": {"nullable": True, "min": None}}}``.
        preprocess_ref: ``name@version`` of a registered transform (default: identity, or
            ``categories@1`` when the frame has pandas category columns).
        data: where the frame came from, recorded in the card.
        artifact: the joblib file ``estimator`` was loaded from, registered as it is (its sha256 is
            the file's); without it the estimator is saved with joblib.
    """
    card, golden = infer_card(estimator, frame, target=target, key=key, overrides=overrides,
                              preprocess_ref=preprocess_ref, preprocess_module=preprocess_module, data=data)
    import joblib

    with tempfile.TemporaryDirectory() as tmp:
        golden_path = Path(tmp) / "golden.parquet"
        golden.to_parquet(golden_path, index=False)
        if artifact is None:
            artifact = Path(tmp) / "model.joblib"
            joblib.dump(estimator, artifact)
        return registry.register(name, artifact, card, golden=golden_path, alias=alias)


def read_frame(path: Path) -> pd.DataFrame:
    """A training frame from Parquet or CSV (by suffix)."""
    if not path.exists():
        raise ModelIntegrityError(f"training data {path} does not exist")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise ModelIntegrityError(f"training data {path}: use a .parquet or .csv file")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pandas and pyarrow raise many kinds
        raise ModelIntegrityError(f"training data {path} cannot be read: {type(exc).__name__}: {exc}") from None


def infer_card(estimator: Any, frame: pd.DataFrame, *, target: str | None = None, key: str | None = None,
               overrides: dict[str, Any] | None = None, preprocess_ref: str | None = None,
               preprocess_module: str | None = None, data: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """The card of ``estimator`` trained on ``frame``, and its golden rows (inputs + ``expected_score``)."""
    if not isinstance(overrides or {}, dict) or not isinstance((overrides or {}).get("inputs") or {}, dict):
        raise ModelIntegrityError("overrides: a mapping such as {positive_class: 1, inputs: {col: {nullable: true}}}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - OVERRIDE_KEYS)
    if unknown:
        raise ModelIntegrityError(f"overrides: unknown key(s) {', '.join(unknown)}; allowed: "
                                  f"{', '.join(sorted(OVERRIDE_KEYS))}")
    for option, column in (("target", target), ("key", key)):
        if column is not None and column not in frame.columns:
            raise ModelIntegrityError(f"--{option} {column!r} is not a column of the training data (columns: "
                                      f"{', '.join(map(str, frame.columns))})")
    transform_entry = _transform_entry(frame, preprocess_ref, preprocess_module)
    names = _input_names(estimator, frame, transform_entry, {target, key} - {None})
    contract = _apply_overrides([infer_column(frame[n], n) for n in names], overrides.get("inputs") or {})
    card: dict[str, Any] = {"description": str(overrides.get("description") or ""), "inputs": contract,
                            "preprocess": transform_entry, "entity_key": key}
    if key is not None:
        card["entity_key_type"] = key_type(frame[key])
    card.update(_task(estimator, overrides.get("positive_class")))
    scorer = check_estimator(card, estimator, frame[names])
    _mark_unknown_handling(contract, estimator, scorer, frame[names], overrides.get("inputs") or {})
    try:
        prediction, score = scorer.predict(scorer.features(frame[names]))
        card["metrics"] = _metrics(card, estimator, scorer, frame, target, prediction, score)
    except Exception as exc:  # noqa: BLE001 - the estimator's or sklearn's own errors, for the person registering
        raise ModelIntegrityError(f"scoring the training data with the estimator failed: {type(exc).__name__}: {exc}. "
                                  "Pass the frame the model was trained on (after the same cleaning)") from None
    card["training"] = {"data": data, "rows": len(frame), "label": target, "stats": stats.input_stats(frame, contract),
                        "score_stats": stats.numeric_stats(pd.Series(score))}
    if card["task"] != "regression":
        card["training"]["prediction_shares"] = stats.prediction_shares(prediction)
    card["library_versions"] = library_versions(estimator)
    card["sklearn_version"] = card["library_versions"]["scikit-learn"]
    golden = frame[[*([key] if key else []), *names]].head(GOLDEN_ROWS).copy()
    golden["expected_score"] = score[: len(golden)]
    cards.parse(card, "the inferred model card")
    return card, golden


def infer_column(values: pd.Series, name: str) -> dict[str, Any]:
    """One contract entry from a training column: its type, whether it had nulls, its range or categories."""
    dtype = values.dtype
    entry: dict[str, Any] = {"name": str(name), "nullable": bool(values.isna().any())}
    if pd.api.types.is_bool_dtype(dtype):
        entry["type"] = "bool"
    elif isinstance(dtype, pd.CategoricalDtype):
        entry.update(type="category", categories=[str(c) for c in dtype.categories])
    elif pd.api.types.is_numeric_dtype(dtype):
        entry["type"] = "int" if pd.api.types.is_integer_dtype(dtype) else "float"
        clean = values.dropna()
        if len(clean):  # observed, not declared: a row outside is scored and flagged, not quarantined
            entry.update(observed_min=float(clean.min()), observed_max=float(clean.max()))
    elif pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise ModelIntegrityError(
            f"column {name!r} holds dates or times ({dtype}): the contract reads float, int, category or bool; "
            "turn it into a number (e.g. days since an event) before training, or in a registered transform")
    else:
        entry.update(type="category", categories=sorted(values.dropna().astype(str).unique().tolist()))
    if entry["type"] == "category":
        markers = sorted(set(entry["categories"]) & set(DEFAULT_NULL_VALUES))
        if markers:  # e.g. the category "None": read as that text, not as missing
            entry["missing_values"] = [m for m in DEFAULT_NULL_VALUES if m not in markers]
    return entry


def key_type(values: pd.Series) -> str:
    """How the entity key is read from a CSV: ``integer`` for an integer dtype, else ``string``."""
    dtype = values.dtype
    integer = pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    return "integer" if integer else "string"


# -- unknown categories the estimator scores itself ---------------------------------------
_HGB = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
_NATIVE = ("LGBMClassifier", "LGBMRegressor", "XGBClassifier", "XGBRegressor", *_HGB)


def _encoder_handles_unknown(step: Any) -> bool:
    """An encoder that turns a category it never saw into something it can score."""
    kind = type(step).__name__
    setting = getattr(step, "handle_unknown", None)
    if kind == "OneHotEncoder":
        return setting in ("ignore", "infrequent_if_exist", "warn")
    if kind == "OrdinalEncoder":
        return setting == "use_encoded_value"
    return kind == "TargetEncoder"  # an unknown category gets the target's mean


def _chain_handles_unknown(step: Any) -> bool:
    """A column transformer's entry: an encoder that handles unknowns, alone or after imputers
    (which pass a value they never saw through unchanged), or ``drop`` (the column is not read)."""
    if isinstance(step, str):
        return step == "drop"
    if type(step).__name__ == "Pipeline":
        for _, inner in step.steps:
            if _encoder_handles_unknown(inner):
                return True
            if type(inner).__name__ != "SimpleImputer":
                return False
        return False
    return _encoder_handles_unknown(step)


def _selected(columns: Any, names: list[str]) -> list[str]:
    """A fitted column transformer's column selection as column names."""
    if isinstance(columns, str):
        return [columns]
    if isinstance(columns, slice):
        return names[columns]
    chosen = list(np.asarray(columns).tolist()) if not isinstance(columns, list) else columns
    if chosen and all(isinstance(c, bool) for c in chosen):
        return [n for n, keep in zip(names, chosen, strict=False) if keep]
    return [names[c] if isinstance(c, int) else str(c) for c in chosen]


def unknown_category_handlers(estimator: Any, names: list[str], categorical: set[str]) -> set[str]:
    """The inputs (of ``names``; ``categorical``: those the frame gave as pandas categories) whose unknown
    categories the estimator scores itself, by its structure (docs/validation.md has the table)."""
    steps = [s for _, s in estimator.steps if s != "passthrough"] if type(estimator).__name__ == "Pipeline" \
        else [estimator]
    first = steps[0] if steps else None
    if first is None:
        return set()
    kind = type(first).__name__
    if kind == "ColumnTransformer":
        fitted_names = [str(n) for n in getattr(first, "feature_names_in_", names)]
        out: set[str] = set()
        for _, step, columns in getattr(first, "transformers_", []):
            if _chain_handles_unknown(step):
                out.update(_selected(columns, fitted_names))
        return out & set(names)
    if _chain_handles_unknown(first) and not isinstance(first, str):
        return set(names)
    if kind in _NATIVE and len(steps) == 1:  # pandas categories: the categories transform makes an unknown missing
        if kind in _HGB:
            flags = getattr(first, "is_categorical_", None)
            fitted = [str(n) for n in getattr(first, "feature_names_in_", names)]
            if flags is None:
                return set()
            return {n for n, is_cat in zip(fitted, flags, strict=False) if is_cat} & categorical
        return set(categorical)
    return set()


def _mark_unknown_handling(contract: list[dict[str, Any]], estimator: Any, scorer: Scorer, rows: pd.DataFrame,
                           overrides: dict[str, Any]) -> None:
    """Set ``handles_unknown`` on the category inputs the estimator scores unknowns of: its structure says so
    (``unknown_category_handlers``) and a probe agrees (rows with a value it never saw score, finite)."""
    categorical = {str(c) for c in rows.columns if isinstance(rows[c].dtype, pd.CategoricalDtype)}
    names = [c["name"] for c in contract if c["type"] == "category" and c.get("categories")]
    handled = unknown_category_handlers(estimator, names, categorical) if names else set()
    for column in contract:
        name = column["name"]
        if name in handled and "handles_unknown" not in (overrides.get(name) or {}) \
                and scores_unknown(scorer, rows, name) is None:
            column["handles_unknown"] = True


def _apply_overrides(contract: list[dict[str, Any]], changes: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = {c["name"]: c for c in contract}
    for column, change in changes.items():
        if column not in by_name:
            raise ModelIntegrityError(f"overrides.inputs.{column}: not an input of the model (inputs: "
                                      f"{', '.join(by_name)})")
        if not isinstance(change or {}, dict):
            raise ModelIntegrityError(f"overrides.inputs.{column}: a mapping of keys such as {{nullable: true}}")
        bad = sorted(set(change or {}) - INPUT_OVERRIDES)
        if bad:
            raise ModelIntegrityError(f"overrides.inputs.{column}: unknown key(s) {', '.join(bad)}; allowed: "
                                      f"{', '.join(sorted(INPUT_OVERRIDES))}")
        for k, v in (change or {}).items():
            if v is None:  # min/max: null removes the bound the frame showed too (what an override file meant)
                by_name[column].pop(k, None)
                if k in ("min", "max"):
                    by_name[column].pop(f"observed_{k}", None)
            else:
                by_name[column][k] = v
    return contract


def _transform_entry(frame: pd.DataFrame, ref: str | None, module: str | None) -> dict[str, Any]:
    if ref is None:
        has_categoricals = any(isinstance(t, pd.CategoricalDtype) for t in frame.dtypes)
        ref = "categories@1" if has_categoricals else "identity@1"
    name, _, version = ref.partition("@")
    if not version.isdigit():
        raise ModelIntegrityError(f"preprocess {ref!r}: use NAME@VERSION, e.g. my_features@1")
    return transforms.spec(name, int(version), module)


def _input_names(estimator: Any, frame: pd.DataFrame, transform: dict[str, Any], exclude: set[str]) -> list[str]:
    """The contract's columns: what the estimator was fitted on (when it reads the frame directly), else
    every column of the frame but the target and the key."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and transform["name"] in ("identity", "categories"):
        names = [str(n) for n in fitted]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ModelIntegrityError(f"the estimator was fitted on column(s) {', '.join(missing)} that the "
                                      "training data does not have: pass the frame the model was trained on")
        return names
    return [str(c) for c in frame.columns if c not in exclude]


def _task(estimator: Any, positive: Any) -> dict[str, Any]:
    classes = getattr(estimator, "classes_", None)
    if classes is not None and not hasattr(estimator, "predict_proba"):
        raise ModelIntegrityError(
            f"the estimator ({type(estimator).__name__}) is a classifier without predict_proba: the pipeline scores "
            "a classifier by its class probability. Wrap it in CalibratedClassifierCV, or use a classifier with "
            "predict_proba (LogisticRegression, gradient boosting, ...)")
    if classes is None:
        if positive is not None:
            raise ModelIntegrityError("overrides.positive_class: the estimator is not a classifier")
        return {"task": "regression", "output": {"prediction": "predicted value", "score": "predicted value"}}
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    binary = len(labels) == 2
    out: dict[str, Any] = {"task": "binary_classification" if binary else "multiclass_classification",
                           "classes": labels}
    if binary:
        out["positive_class"] = labels[-1] if positive is None else positive
        out["output"] = {"prediction": "predicted class", "score": f"probability of class {out['positive_class']}"}
    else:
        out["output"] = {"prediction": "predicted class", "score": "probability of the predicted class"}
    return out


def _metrics(card: dict[str, Any], estimator: Any, scorer: Scorer, frame: pd.DataFrame, target: str | None,
             prediction: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """Metrics on the registration frame (pass a holdout frame for honest ones)."""
    if target is None:
        return {}
    from sklearn import metrics

    y = frame[target].to_numpy()
    out: dict[str, Any] = {"evaluated_on": "registration data", "rows": int(len(y))}
    if card["task"] == "regression":
        out.update(rmse=float(np.sqrt(metrics.mean_squared_error(y, prediction.astype(float)))),
                   mae=float(metrics.mean_absolute_error(y, prediction.astype(float))),
                   r2=float(metrics.r2_score(y, prediction.astype(float))))
        return out
    out["accuracy"] = float(metrics.accuracy_score(y.astype(str), prediction.astype(str)))
    if card["task"] == "binary_classification":
        out["roc_auc"] = float(metrics.roc_auc_score(y.astype(str) == str(card["positive_class"]), score))
    return out


def library_versions(estimator: Any) -> dict[str, str]:
    """scikit-learn, pandas, numpy, python, and the estimator's own library (LightGBM, XGBoost) if another."""
    import sklearn

    out = {"scikit-learn": sklearn.__version__, "pandas": pd.__version__, "numpy": np.__version__,
           "python": platform.python_version()}
    root = type(estimator).__module__.split(".")[0]
    if root not in ("sklearn", "pipeline"):
        module = importlib.import_module(root)
        out[root] = str(getattr(module, "__version__", "unknown"))
    return out



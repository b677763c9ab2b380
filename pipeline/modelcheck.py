"""What every registration checks before a model enters the registry: the card's schema, the card against
its estimator (it predicts, reads only what the contract gives it, knows the positive class), and the
columns it says score unknown categories. Below the registry, which calls ``check_registration``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import card as cards
from pipeline.errors import ModelIntegrityError
from pipeline.kernels.predict import Scorer
from pipeline.kernels.transforms import for_card
from pipeline.model import ModelVersion

UNSEEN = "__scoring_unseen_category__"  # the probe's value: no training frame holds it


def load_artifact(path: Path, data: bytes | None = None) -> Any:
    """The estimator in a joblib file the user gives (their own file: it is unpickled to be checked).

    ``data``: the file's bytes read already (registration unpickles the bytes it then copies in).
    """
    import joblib

    if data is None and not path.exists():
        raise ModelIntegrityError(f"--artifact {path} does not exist")
    try:
        return joblib.load(path if data is None else io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - a missing library, a corrupt file, a class pickled from __main__
        raise ModelIntegrityError(
            f"--artifact {path} cannot be loaded: {type(exc).__name__}: {exc}. Save the fitted estimator with "
            "joblib.dump in an environment like this one (its libraries installed; classes importable, not "
            "defined in __main__)") from None

def check_estimator(card: dict[str, Any], estimator: Any, sample: pd.DataFrame | None = None) -> Scorer:
    """The card must fit the estimator: it predicts, reads only columns the contract makes, knows the
    positive class. Returns a scorer of the two (scoring a sample of rows when one is given)."""
    if not hasattr(estimator, "predict"):
        raise ModelIntegrityError(f"the artifact is a {type(estimator).__name__}, which has no predict(): "
                                  "register a fitted scikit-learn estimator or Pipeline")
    classes = getattr(estimator, "classes_", None)
    if card.get("positive_class") is not None:
        labels = [c.item() if hasattr(c, "item") else c for c in (classes if classes is not None else [])]
        if card["positive_class"] not in labels:
            raise ModelIntegrityError(f"positive_class {card['positive_class']!r} is not one of the estimator's "
                                      f"classes {labels}: set positive_class to one of them")
    mv = ModelVersion(str(card.get("name") or "new"), int(card.get("version") or 0), Path("."), card)
    scorer = Scorer(mv, estimator, for_card(card))
    rows = sample if sample is not None else synthetic_rows(card["inputs"])
    features = scorer.features(rows.head(50))
    needed = [str(n) for n in getattr(estimator, "feature_names_in_", [])]
    missing = [n for n in needed if n not in features.columns]
    if missing:
        raise ModelIntegrityError(
            f"the estimator needs column(s) {', '.join(missing)} that the card's inputs (after preprocessing "
            f"{transform_name(card)}) do not give it: add them to inputs")
    try:
        scorer.predict(features)
    except Exception as exc:  # noqa: BLE001 - any estimator error means card and artifact disagree
        raise ModelIntegrityError(f"the estimator cannot score rows shaped by the card: {type(exc).__name__}: "
                                  f"{exc}. Check the inputs' types and the preprocessing") from None
    return scorer

def transform_name(card: dict[str, Any]) -> str:
    entry = card.get("preprocess") or {"name": "identity", "version": 1}
    return f"{entry.get('name', 'identity')}@{entry.get('version', 1)}"

def synthetic_rows(inputs: list[dict[str, Any]]) -> pd.DataFrame:
    """One plausible row per contract (for checking a hand-written card that comes without golden rows)."""
    row: dict[str, Any] = {}
    for c in inputs:
        if c["type"] in ("float", "int"):
            low = next((c[k] for k in ("min", "observed_min") if c.get(k) is not None), 0.0)
            row[c["name"]] = float(low)
        elif c["type"] == "bool":
            row[c["name"]] = False
        else:
            row[c["name"]] = (c.get("categories") or ["x"])[0]
    return pd.DataFrame([row])

def scores_unknown(scorer: Scorer, rows: pd.DataFrame, name: str) -> str | None:
    """Whether the model scores rows whose column ``name`` holds a value it never saw: None when it does
    (every score finite), else why not."""
    probe = rows.head(20).copy()
    probe[name] = pd.Series([UNSEEN] * len(probe), index=probe.index, dtype=object)
    try:
        _, score = scorer.predict(scorer.features(probe))
    except Exception as exc:  # noqa: BLE001 - the estimator refuses an unknown value: such rows stay quarantined
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if not np.all(np.isfinite(np.asarray(score, dtype="float64"))):
        return "its scores are not finite numbers"
    return None

def check_registration(card: dict[str, Any], artifact: Path, golden: Path | None, data: bytes | None = None) -> None:
    """What every registration checks: the card's schema, then the card against its estimator
    (unpickled from ``data``, the artifact's bytes, when given)."""
    cards.parse(card)
    estimator = load_artifact(artifact, data)  # the caller's own artifact, before it enters the registry
    sample = pd.read_parquet(golden).drop(columns=["expected_score"], errors="ignore") if golden else None
    names = [c["name"] for c in card["inputs"]]
    if sample is not None:
        missing = [n for n in names if n not in sample.columns]
        if missing:
            raise ModelIntegrityError(f"golden rows lack input column(s) {', '.join(missing)}")
        sample = sample[names]
    scorer = check_estimator(card, estimator, sample)
    rows = sample if sample is not None else synthetic_rows(card["inputs"])
    for column in card["inputs"]:
        if column.get("handles_unknown"):
            why = scores_unknown(scorer, rows, column["name"])
            if why is not None:
                raise ModelIntegrityError(
                    f"inputs.{column['name']}.handles_unknown is true, but the estimator cannot score a category it "
                    f"never saw in that column ({why}): such rows would fail the whole partition's scoring. Remove "
                    "handles_unknown (they are quarantined as unknown_category), or give the model an encoder that "
                    "handles unknown values (docs/validation.md)")

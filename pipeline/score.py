"""Score: load a verified model version and predict batch by batch, keeping the entity key."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline import preprocess
from pipeline.errors import ModelIntegrityError
from pipeline.registry import ModelVersion, Registry

log = logging.getLogger(__name__)
GOLDEN_TOLERANCE = 1e-9


@dataclass
class Scorer:
    """A loaded model with the transformation it was trained with."""

    version: ModelVersion
    estimator: Any
    transform: preprocess.Transform

    @property
    def inputs(self) -> list[str]:
        return [c["name"] for c in self.version.card["inputs"]]

    def features(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Apply the model's registered preprocessing to contract columns."""
        return self.transform(raw[self.inputs])

    def predict(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class and score (probability of the positive class)."""
        card = self.version.card
        if hasattr(self.estimator, "predict_proba"):
            proba = self.estimator.predict_proba(features)
            classes = list(self.estimator.classes_)
            positive = card.get("positive_class", classes[-1])
            score = proba[:, classes.index(positive)] if len(classes) == 2 else proba.max(axis=1)
            prediction = np.asarray(classes)[proba.argmax(axis=1)]
            return prediction, score
        prediction = self.estimator.predict(features)
        return prediction, prediction.astype("float64")


def load_scorer(registry: Registry, name: str, version: int) -> Scorer:
    """Resolve, verify (sha256, golden rows) and load a model version."""
    mv = registry.resolve(name, version)
    estimator = registry.load(mv)
    scorer = Scorer(mv, estimator, preprocess.for_card(mv.card))
    verify_golden(scorer)
    return scorer


def verify_golden(scorer: Scorer) -> None:
    """Re-score the rows saved at training time: training and scoring must agree."""
    path = scorer.version.golden
    if not path.exists():
        log.warning("model %s v%s has no golden rows; skipping the training/scoring parity check",
                    scorer.version.name, scorer.version.version)
        return
    golden = pd.read_parquet(path)
    _, score = scorer.predict(scorer.features(golden))
    worst = float(np.max(np.abs(score - golden["expected_score"].to_numpy()))) if len(golden) else 0.0
    if worst > GOLDEN_TOLERANCE:
        raise ModelIntegrityError(
            f"model {scorer.version.name} v{scorer.version.version} does not reproduce its training "
            f"scores on its golden rows (largest difference {worst:.3g}): the preprocessing or a "
            "library changed since training. Retrain in this environment."
        )


def score_frame(scorer: Scorer, raw: pd.DataFrame, key: str) -> pd.DataFrame:
    """Score contract rows; the result has the entity key, prediction and score."""
    prediction, score = scorer.predict(scorer.features(raw))
    return pd.DataFrame({key: raw[key].to_numpy(), "prediction": prediction.astype(str), "score": score})

"""A loaded model version that scores (``pipeline.kernels.predict.Scorer``), under the name the registration
checks and the score stage import it by."""

from __future__ import annotations

from pipeline.kernels.predict import Scorer

__all__ = ["Scorer"]
